"""Cutout speed on this CPU: one JSON line.

- photos_per_s: a folder of Oxford-size photos (about 500x375) end to end, decode + infer
  + encode PNG + write, through the same pipeline as `petseg cutout`, with each backend.
- latency_ms_batch1: the model alone, median of repeated batch-1 calls at 224x224.
- peak_rss_mb_50mp: peak memory of `petseg cutout` (ONNX) in a fresh process for one
  50-megapixel JPEG.

Targets for unet_mobilenetv3 at 224 (random weights are fine for speed): >= 20 photos/s
with ONNX, latency <= 61/3 ms (3x the reference notebook's Keras model), < 1500 MB.

    python benchmarks/cutout_speed.py [--photos 64] [--model unet_mobilenetv3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "oxford-pets-sample" / "images"
TARGETS = {"onnx_photos_per_s": 20.0, "latency_ms_batch1": 61.0 / 3, "peak_rss_mb_50mp": 1500.0}
FIFTY_MEGAPIXELS = (8660, 5774)


def oxford_size_photos(count: int, scratch: Path) -> list[Path]:
    """The shared Oxford sample, or generated toy pets at Oxford size when it is absent."""
    if SAMPLE.is_dir():
        return sorted(SAMPLE.glob("*.jpg"))[:count]
    from petseg.data.toy import make_toy_dataset

    root = make_toy_dataset(scratch / "toy", n=count, size=500)
    return sorted((root / "images").glob("*.jpg"))[:count]


def photos_per_second(segmenter, photos: list[Path], out: Path) -> float:
    from petseg.inference import CutoutOptions
    from petseg.inference.files import plan_cutouts
    from petseg.inference.pipeline import run_cutouts

    run_cutouts(segmenter, plan_cutouts(map(str, photos[:8]), out / "warmup", ".png").jobs, CutoutOptions())
    jobs = plan_cutouts(map(str, photos), out / "run", ".png").jobs
    start = time.perf_counter()
    summary = run_cutouts(segmenter, jobs, CutoutOptions())
    elapsed = time.perf_counter() - start
    return len(summary.written) / elapsed


def latency_ms(segmenter, size: int, repeats: int = 30) -> float:
    batch = np.random.default_rng(0).standard_normal((1, 3, size, size), dtype=np.float32)
    for _ in range(5):
        segmenter.backend(batch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        segmenter.backend(batch)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def peak_rss_mb_for_big_photo(onnx_file: Path, source: Path, scratch: Path) -> tuple[float, float]:
    """(peak MB, seconds) of `petseg cutout` on a 50 MP JPEG, measured in a child process."""
    big = scratch / "fifty-megapixels.jpg"
    Image.open(source).convert("RGB").resize(FIFTY_MEGAPIXELS, Image.BILINEAR).save(big, quality=90)
    command = [sys.executable, "-m", "petseg", "cutout", str(big), "--out", str(scratch / "big"),
               "--model", str(onnx_file), "--force"]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    seconds = time.perf_counter() - start
    # ru_maxrss of waited-for children, in kilobytes on Linux; this is our only child.
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=64)
    parser.add_argument("--model", default="unet_mobilenetv3")
    parser.add_argument("--image-size", type=int, default=224)
    args = parser.parse_args()

    from petseg.inference.export import export_onnx
    from petseg.inference import Segmenter
    from petseg.models import create_model

    model = create_model(args.model, pretrained=False, image_size=args.image_size).eval()
    with tempfile.TemporaryDirectory() as directory:
        scratch = Path(directory)
        onnx_file = scratch / "model.onnx"
        onnx_file.write_bytes(export_onnx(model))
        photos = oxford_size_photos(args.photos, scratch)
        # The 50 MP child runs first, so that RUSAGE_CHILDREN holds only its peak.
        peak_mb, big_seconds = peak_rss_mb_for_big_photo(onnx_file, photos[0], scratch)
        segmenters = {"torch": Segmenter.from_model(model), "onnx": Segmenter.load(onnx_file)}
        result = {
            "benchmark": "cutout_speed",
            "model": args.model,
            "image_size": args.image_size,
            "cpus": os.cpu_count(),
            "photos": len(photos),
            "photos_source": "oxford-pets-sample" if SAMPLE.is_dir() else "toy (500 px)",
            "photos_per_s": {name: round(photos_per_second(seg, photos, scratch / name), 2) for name, seg in segmenters.items()},
            "latency_ms_batch1": {name: round(latency_ms(seg, args.image_size), 2) for name, seg in segmenters.items()},
            "peak_rss_mb_50mp": round(peak_mb, 1),
            "seconds_50mp": round(big_seconds, 2),
            "targets": {key: round(value, 2) for key, value in TARGETS.items()},
        }
    result["meets_targets"] = {
        "onnx_photos_per_s": result["photos_per_s"]["onnx"] >= TARGETS["onnx_photos_per_s"],
        "latency_ms_batch1": result["latency_ms_batch1"]["onnx"] <= TARGETS["latency_ms_batch1"],
        "peak_rss_mb_50mp": result["peak_rss_mb_50mp"] < TARGETS["peak_rss_mb_50mp"],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
