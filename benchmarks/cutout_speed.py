"""Cutout speed of the bundled model on this CPU: one JSON line.

- latency_ms_batch1: the model alone, median of batch-1 calls at its own size (each
  session timed in blocks, the blocks in turn: see `latency_ms`),
  for ONNX float32, ONNX int8 (the shipped .onnx when it is int8, else quantized here on
  the photos), PyTorch and the shipped .onnx file ("shipped"), with --compare-onnx FILE
  also that file ("compared", e.g. the previous bundled model) and the ratio
  shipped_vs_compared; latency_ms_batch1_one_thread: the ONNX ones on one thread, the
  steadier comparison on a busy machine.
- photos_per_s: a folder of Oxford-size photos (about 500x375) end to end, decode +
  infer + alpha + encode PNG + write, through the same pipeline as `petseg cutout`, with
  the default alpha (matting); photos_per_s_by_alpha: the default model (the shipped
  ONNX) with each --alpha (matting, hard, soft).
- cold_cutout_5_photos_s, help_s, models_s: wall time of fresh `petseg cutout` (5
  photos, default model), `petseg --help` and `petseg models` processes.
- peak_rss_mb_50mp: peak memory of `petseg cutout` (default model) in a fresh process
  for one 50-megapixel JPEG.

Targets: cold cutout of 5 photos <= 1.5 s, --help < 0.5 s, models < 2 s, int8 latency
1.5x lower than float (on the cutout's threads and on one, as each server photo runs),
< 1500 MB for 50 megapixels.

    python benchmarks/cutout_speed.py [--photos 32] [--compare-onnx OLD.onnx]
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
TARGETS = {"cold_cutout_5_photos_s": 1.5, "help_s": 0.5, "models_s": 2.0, "int8_speedup": 1.5,
           "int8_speedup_one_thread": 1.5, "peak_rss_mb_50mp": 1500.0}
FIFTY_MEGAPIXELS = (8660, 5774)
PETSEG = [sys.executable, "-m", "petseg"]


def oxford_size_photos(count: int, scratch: Path) -> list[Path]:
    """The shared Oxford sample, or generated toy pets at Oxford size when it is absent."""
    if SAMPLE.is_dir():
        photos = sorted(SAMPLE.glob("*.jpg"))
        return photos[:: max(1, len(photos) // count)][:count]
    from petseg.data.toy import make_toy_dataset

    root = make_toy_dataset(scratch / "toy", n=count, size=500)
    return sorted((root / "images").glob("*.jpg"))[:count]


def photos_per_second(segmenter, photos: list[Path], out: Path, alpha: str = "matting") -> float:
    from petseg.inference import CutoutOptions
    from petseg.inference.files import plan_cutouts
    from petseg.inference.pipeline import run_cutouts

    options = CutoutOptions(alpha=alpha)
    run_cutouts(segmenter, plan_cutouts(map(str, photos[:4]), out / "warmup", ".png").jobs, options)
    jobs = plan_cutouts(map(str, photos), out / "run", ".png").jobs
    start = time.perf_counter()
    summary = run_cutouts(segmenter, jobs, options)
    return len(summary.written) / (time.perf_counter() - start)


# After a call, ONNX Runtime's and PyTorch's worker threads spin for a while waiting for
# more work; calls of another session made meanwhile share the cores with them. Timing the
# sessions call by call in turn made every 2-thread session look about 40% slower (the
# shipped int8 file measured 56 ms beside a float session, 40 ms alone). So each session
# is timed in blocks, after a pause and one untimed call, and the blocks take turns so a
# change of load still hits every session alike.
SETTLE_S = 0.2
BLOCKS = 4


def latency_ms(segmenters: dict, size: int, repeats: int = 20) -> dict:
    """Median batch-1 latency per backend: blocks of calls per session, the sessions in turn."""
    batch = np.random.default_rng(0).standard_normal((1, 3, size, size), dtype=np.float32)
    times = {name: [] for name in segmenters}
    for _ in range(BLOCKS):
        for name, segmenter in segmenters.items():
            time.sleep(SETTLE_S)
            segmenter.backend(batch)  # wakes its threads (and warms it up on the first block)
            for _ in range(-(-repeats // BLOCKS)):
                start = time.perf_counter()
                segmenter.backend(batch)
                times[name].append(time.perf_counter() - start)
    return {name: round(statistics.median(values) * 1000, 1) for name, values in times.items()}


def wall_seconds(*arguments) -> float:
    start = time.perf_counter()
    subprocess.run([*PETSEG, *map(str, arguments)], check=True, capture_output=True)
    return time.perf_counter() - start


def peak_rss_mb_for_big_photo(source: Path, scratch: Path) -> tuple[float, float]:
    """(peak MB, seconds) of `petseg cutout` on a 50 MP JPEG, measured in a child process."""
    big = scratch / "fifty-megapixels.jpg"
    Image.open(source).convert("RGB").resize(FIFTY_MEGAPIXELS, Image.BILINEAR).save(big, quality=90)
    seconds = wall_seconds("cutout", big, "--out", scratch / "big", "--force")
    # ru_maxrss of waited-for children, in kilobytes on Linux: the largest child so far.
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, seconds


def int8_model(float_onnx: bytes, photos: list[Path], scratch: Path) -> tuple[Path, str]:
    """The shipped .onnx when it is int8, else the float export quantized on these photos."""
    import onnx

    from petseg.inference import Segmenter
    from petseg.inference.quantize import PRECISION_METADATA_KEY, calibration_batches, quantize_int8
    from petseg.models.files import bundled_model_path

    shipped = bundled_model_path(".onnx")
    metadata = {prop.key: prop.value for prop in onnx.load(str(shipped)).metadata_props}
    if metadata.get(PRECISION_METADATA_KEY, "").startswith("int8"):
        return shipped, f"shipped ({metadata[PRECISION_METADATA_KEY]})"
    folder = scratch / "calibration"
    folder.mkdir()
    for photo in photos:
        (folder / photo.name).symlink_to(photo.resolve())
    quantized, _ = quantize_int8(float_onnx, calibration_batches(folder, Segmenter.load(shipped).config))
    (scratch / "int8.onnx").write_bytes(quantized)
    return scratch / "int8.onnx", "quantized here (decoder)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=32)
    parser.add_argument("--alpha", nargs="+", default=["matting", "hard", "soft"],
                        help="Cutout alphas timed with the default model (photos_per_s_by_alpha).")
    parser.add_argument("--compare-onnx", type=Path, metavar="FILE",
                        help="Another ONNX model (e.g. an earlier bundled one) timed beside the shipped ONNX, "
                             "interleaved in the same loop: latency 'compared' and the ratio shipped/compared.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as directory:
        scratch = Path(directory)
        photos = oxford_size_photos(args.photos, scratch)
        # Fresh processes first, so that RUSAGE_CHILDREN holds the 50 MP cutout's peak, and
        # before this process loads PyTorch: a child counts its parent's pages until it execs
        # (the figure read 1171 MB with the model loaded here, 928 MB without).
        peak_mb, big_seconds = peak_rss_mb_for_big_photo(photos[0], scratch)
        cold = {
            "cold_cutout_5_photos_s": wall_seconds("cutout", *photos[:5], "--out", scratch / "cold"),
            "help_s": wall_seconds("--help"),
            "models_s": wall_seconds("models"),
        }
        from petseg.inference import Segmenter
        from petseg.inference.export import export_onnx
        from petseg.models import load_model
        from petseg.models.files import bundled_model_path

        model = load_model(bundled_model_path())
        float_onnx = export_onnx(model)
        (scratch / "float.onnx").write_bytes(float_onnx)
        int8, int8_source = int8_model(float_onnx, photos, scratch)
        onnx_files = {"onnx_float": scratch / "float.onnx", "onnx_int8": int8}
        segmenters = {name: Segmenter.load(path) for name, path in onnx_files.items()}
        segmenters["torch"] = Segmenter.from_model(model)
        shipped = {"shipped": bundled_model_path(".onnx")}
        if args.compare_onnx:
            shipped["compared"] = args.compare_onnx
        latency = latency_ms({**segmenters, **{name: Segmenter.load(path) for name, path in shipped.items()}},
                             model.config.image_size)
        one_thread = latency_ms({name: Segmenter.load(path, threads=1) for name, path in {**onnx_files, **shipped}.items()},
                                model.config.image_size)
        result = {
            "benchmark": "cutout_speed",
            "model": "bundled",
            "architecture": model.config.architecture,
            "image_size": model.config.image_size,
            "default_model": Segmenter.load().backend.name,
            "int8": int8_source,
            "cpus": os.cpu_count(),
            "load_average": round(os.getloadavg()[0], 2),
            "photos": len(photos),
            "photos_source": "oxford-pets-sample" if SAMPLE.is_dir() else "toy (500 px)",
            "latency_ms_batch1": latency,
            "latency_ms_batch1_one_thread": one_thread,
            "int8_speedup": round(latency["onnx_float"] / latency["onnx_int8"], 2),
            "int8_speedup_one_thread": round(one_thread["onnx_float"] / one_thread["onnx_int8"], 2),
            **({"shipped_vs_compared": round(latency["shipped"] / latency["compared"], 2),
                "shipped_vs_compared_one_thread": round(one_thread["shipped"] / one_thread["compared"], 2)}
               if args.compare_onnx else {}),
            "photos_per_s": {name: round(photos_per_second(segmenter, photos, scratch / name), 2)
                             for name, segmenter in segmenters.items()},
            "photos_per_s_by_alpha": {alpha: round(photos_per_second(Segmenter.load(), photos, scratch / alpha, alpha), 2)
                                      for alpha in args.alpha},
            **{key: round(value, 2) for key, value in cold.items()},
            "peak_rss_mb_50mp": round(peak_mb, 1),
            "seconds_50mp": round(big_seconds, 2),
            "targets": TARGETS,
        }
    result["meets_targets"] = {
        key: (result[key] >= target if key.startswith("int8_speedup") else result[key] <= target)
        for key, target in TARGETS.items()
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
