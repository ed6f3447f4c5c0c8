"""Quality of a model on any dataset in the official Oxford layout, at original resolution.

    python benchmarks/quality.py DATA_DIR [--model MODEL] [--split all|trainval|test] [--flip-tta]

MODEL defaults to the bundled model. Prints one JSON line with every METRICS.md figure
at the photos' own resolution (the figures a cutout user sees), plus the same at the
model's resolution under "model_resolution", and the cutout-alpha figures (alpha_mae,
pet_opaque, bg_clear, semi_known) of each --alpha kind side by side under "alpha".
"""

from __future__ import annotations

import argparse
import json
import time

from petseg.data.layouts import load_samples
from petseg.evaluate import evaluate
from petseg.inference import Segmenter
from petseg.inference.compose import ALPHAS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", help="A dataset in the official layout (images/, annotations/trimaps/).")
    parser.add_argument("--model", default=None, help="Run dir, .safetensors or .onnx; default: the bundled model.")
    parser.add_argument("--split", default="all", choices=("all", "trainval", "test"))
    parser.add_argument("--backend", default=None, choices=("torch", "onnx"))
    parser.add_argument("--flip-tta", action="store_true", help="Average with the mirrored photo's prediction.")
    parser.add_argument("--alpha", nargs="+", default=list(ALPHAS), choices=ALPHAS, help="Cutout alphas to score.")
    args = parser.parse_args()

    segmenter = Segmenter.load(args.model, backend=args.backend, flip_tta=args.flip_tta)
    samples = load_samples(args.data_dir, args.split)
    started = time.perf_counter()
    result = evaluate(segmenter, samples, alphas=args.alpha)
    seconds = time.perf_counter() - started
    strip = lambda metrics: {key: value for key, value in metrics.items() if key != "confusion_matrix"}  # noqa: E731
    print(json.dumps({
        "model": args.model or "bundled",
        "architecture": result["model"],
        "image_size": result["image_size"],
        "data": args.data_dir,
        "split": args.split,
        "flip_tta": args.flip_tta,
        "num_images": result["num_images"],
        "skipped": len(result["skipped"]),
        "resolution": "original",
        **strip(result["resolutions"]["original"]),
        "confusion_matrix": result["resolutions"]["original"]["confusion_matrix"],
        "model_resolution": strip(result["resolutions"]["model"]),
        "alpha": {kind: {key: round(value, 4) for key, value in metrics.items()} for kind, metrics in result["alpha"].items()},
        "seconds": round(seconds, 1),
    }))


if __name__ == "__main__":
    main()
