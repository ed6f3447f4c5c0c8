"""Images/second of a cold epoch (decode + letterbox) and a cached epoch (memory-mapped
uint8 arrays) over the shared Oxford-IIIT Pet sample. Prints one JSON line.

Goal: the cached epoch is at least 10x the cold one.

    python benchmarks/data_throughput.py [--data DIR] [--size 224] [--workers 0]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

GOAL_SPEEDUP = 10.0
SHARED_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "oxford-pets-sample"


def epoch_images_per_second(dataset, batch_size: int, workers: int) -> float:
    from petseg.data.dataset import make_loader

    started = time.perf_counter()
    images = sum(len(masks) for _, masks in make_loader(dataset, batch_size, shuffle=True, workers=workers))
    return images / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED_SAMPLE, help="dataset folder (Oxford layout)")
    parser.add_argument("--size", type=int, default=224, help="model input size")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="torch intra-op threads in this process (DataLoader workers use 1)")
    parser.add_argument("--cached-epochs", type=int, default=3, help="cached epochs to time (the best counts)")
    args = parser.parse_args()
    result = {"benchmark": "data_throughput", "data": str(args.data), "image_size": args.size,
              "workers": args.workers, "torch_threads": args.torch_threads}
    if not (args.data / "images").is_dir():
        print(json.dumps({**result, "skipped": f"no dataset at {args.data}"}))
        return

    import torch

    from petseg.data.dataset import SegmentationDataset
    from petseg.data.layouts import load_samples
    from petseg.models.config import IMAGENET_MEAN, IMAGENET_STD

    # Per-item tensors are small: extra threads only add contention, as in DataLoader workers.
    torch.set_num_threads(args.torch_threads)
    samples = load_samples(args.data, "all")
    with tempfile.TemporaryDirectory(prefix="petseg-bench-cache-") as cache_dir:
        def dataset():
            return SegmentationDataset(samples, args.size, IMAGENET_MEAN, IMAGENET_STD, cache_dir=cache_dir)

        cold = epoch_images_per_second(dataset(), args.batch_size, args.workers)
        cached = max(epoch_images_per_second(dataset(), args.batch_size, args.workers) for _ in range(args.cached_epochs))
    speedup = cached / cold
    print(json.dumps({
        **result,
        "images": len(samples),
        "cold_images_per_s": round(cold, 1),
        "cached_images_per_s": round(cached, 1),
        "speedup": round(speedup, 1),
        "goal_speedup": GOAL_SPEEDUP,
        "meets_goal": speedup >= GOAL_SPEEDUP,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
