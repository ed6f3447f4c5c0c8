"""Quality of a model on any dataset in the official Oxford layout, at original resolution.

    python benchmarks/quality.py DATA_DIR [--model MODEL] [--split all|trainval|test|held-out] [--last] [--[no-]flip-tta]

MODEL defaults to the bundled model. `--split held-out` scores the photos that the run
in MODEL held out with `petseg train --val-fraction` (a held-out figure at near-final data
size); `--last` scores the run's final weights, as a bundled model ships them, instead of
its best epoch's (which that same held-out set chose). Prints one JSON line with every METRICS.md figure
at the photos' own resolution (the figures a cutout user sees), plus the same at the
model's resolution under "model_resolution", and the cutout-alpha figures (alpha_mae,
pet_opaque, bg_clear, semi_known) of each --alpha kind side by side under "alpha".
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from petseg.data.layouts import load_samples
from petseg.evaluate import evaluate
from petseg.inference import Segmenter
from petseg.inference.compose import ALPHAS


def run_folder(model: str | None) -> Path:
    from petseg.models.files import resolve_model_path

    if model is None:
        raise SystemExit("error: --split held-out and --last need --model RUN (a training run's folder)")
    return resolve_model_path(model).parent


def held_out_photos(run: Path, data_dir: str) -> list:
    """The photos of data_dir that the run held out for validation (its --val-fraction share, same seed)."""
    from dataclasses import replace

    from petseg.run_dir import CONFIG_FILE
    from petseg.train.configure import read_config_file
    from petseg.train.data import load_splits

    config = replace(read_config_file(run / CONFIG_FILE), data=data_dir)
    if config.val_fraction is None:
        raise SystemExit(f"error: {run} held nothing out (it was trained without --val-fraction)")
    return load_splits(config).val


def final_weights_segmenter(run: Path, args) -> Segmenter:
    from petseg.models import load_model
    from petseg.run_dir import CHECKPOINT_FILE, best_model_file
    from petseg.train.checkpoint import load_final_weights

    model = load_model(best_model_file(run))
    load_final_weights(model, run / CHECKPOINT_FILE)
    return Segmenter.from_model(model, backend=args.backend or "torch", flip_tta=args.flip_tta, name=str(run))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", help="A dataset in the official layout (images/, annotations/trimaps/).")
    parser.add_argument("--model", default=None, help="Run dir, .safetensors or .onnx; default: the bundled model.")
    parser.add_argument("--split", default="all", choices=("all", "trainval", "test", "held-out"))
    parser.add_argument("--last", action="store_true", help="Score the run's final weights instead of its best epoch's.")
    parser.add_argument("--backend", default=None, choices=("torch", "onnx"))
    parser.add_argument("--flip-tta", action=argparse.BooleanOptionalAction, default=None,
                        help="Average with the mirrored photo's prediction (default: for matting only, as cutouts do).")
    parser.add_argument("--alpha", nargs="+", default=list(ALPHAS), choices=ALPHAS, help="Cutout alphas to score.")
    args = parser.parse_args()

    run = run_folder(args.model) if args.last or args.split == "held-out" else None
    if args.last:
        segmenter = final_weights_segmenter(run, args)
    else:
        segmenter = Segmenter.load(args.model, backend=args.backend, flip_tta=args.flip_tta)
    if args.split == "held-out":
        samples = held_out_photos(run, args.data_dir)
    else:
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
        "weights": "last" if args.last else "best",
        "flip_tta": result["flip_tta"],
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
