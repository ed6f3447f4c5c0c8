"""Training throughput (images/s) at 224x224 on this CPU for the notebook's three U-Nets.

Default decoders, encoder trainable, batch 8, pretrained=False, synthetic data: this
measures the model + loss + optimizer step, the part the notebook's Keras run is
compared on (about 3.8 images/s for its MobileNetV2 U-Net on the same machine).
Prints ONE JSON line.

    python benchmarks/train_throughput.py [--steps 6] [--no-channels-last] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

MODELS = ("unet_mobilenetv2", "unet_mobilenetv3", "unet_diy")
KERAS_MOBILENETV2_IMAGES_PER_SECOND = 3.8


def measure(name: str, *, batch_size: int, image_size: int, steps: int, warmup: int,
            channels_last: bool) -> tuple[float, float]:
    """(images per wall-clock second, images per CPU-second of this process)."""
    import torch

    from petseg.models import create_model
    from petseg.train.losses import make_loss

    torch.manual_seed(0)
    model = create_model(name, pretrained=False, image_size=image_size).train()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    # foreach: one fused update over all parameter tensors instead of a Python loop per tensor.
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=True)
    loss_fn = make_loss("dice_ce")
    images = torch.randn(batch_size, 3, image_size, image_size).contiguous(memory_format=memory_format)
    labels = torch.randint(0, 3, (batch_size, image_size, image_size))

    def step():
        loss = loss_fn(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    started, cpu_started = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    images = batch_size * steps
    return images / (time.perf_counter() - started), images / (time.process_time() - cpu_started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                        help="NHWC memory format, as petseg train uses (--no-channels-last for NCHW)")
    parser.add_argument("--threads", type=int, nargs="+", default=None,
                        help="torch.set_num_threads values to try (default: 1 and torch's own choice); the best counts")
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    args = parser.parse_args()

    import torch

    # One thread often beats several on a small shared CPU: OpenMP threads spin-wait for
    # each other whenever another process holds a core. Both are measured.
    thread_counts = args.threads or sorted({1, torch.get_num_threads()})
    load_before = os.getloadavg()[0]
    by_threads = {}
    for threads in thread_counts:
        torch.set_num_threads(threads)
        by_threads[threads] = {
            name: measure(name, batch_size=args.batch_size, image_size=args.image_size, steps=args.steps,
                          warmup=args.warmup, channels_last=args.channels_last)[0]
            for name in args.models
        }
    results = {name: round(max(run[name] for run in by_threads.values()), 2) for name in args.models}
    record = {
        "benchmark": "train_throughput",
        "unit": "images/s",
        "images_per_second": results,
        "by_threads": {str(t): {name: round(v, 2) for name, v in run.items()} for t, run in by_threads.items()},
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "batch_size": args.batch_size,
        "image_size": args.image_size,
        "channels_last": args.channels_last,
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
    }
    if "unet_mobilenetv2" in results:
        record["mobilenetv2_vs_keras"] = round(results["unet_mobilenetv2"] / KERAS_MOBILENETV2_IMAGES_PER_SECOND, 2)
        record["target_met"] = record["mobilenetv2_vs_keras"] >= 2.0
    print(json.dumps(record))


if __name__ == "__main__":
    main()
