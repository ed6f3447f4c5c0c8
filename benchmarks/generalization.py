"""Leave-one-breed-out: how well a training recipe does on pets of a breed it never saw.

    python benchmarks/generalization.py DATA_DIR --out runs/lobo-default
        [--recipe default|generalize|seed | --config FILE] [--model M]
        [--epochs N] [--image-size S] [--batch-size B] [--threads T] [--breeds A,B,...]
        [--keep-suspect] [--flip-tta] [--resume] [--force]

For each breed in DATA_DIR (or each of --breeds), one fold: train the recipe on every
photo of the other breeds (train split `all`; its validation is the other breeds' test
list, a fit check that only picks the saved epoch), then score the fold's
best.safetensors at the photos' original resolution (petseg.evaluate, as
benchmarks/quality.py does) on every photo of the held-out breed. Samples `petseg data
check` finds unfit (e.g. Abyssinian_34, whose trimap has no pet) are neither trained on
nor scored (masks without pet pixels are with --keep-suspect).

Each fold's run folder is OUT/holdout-<breed>/, with its scores in holdout.json: a
stopped benchmark continues with --resume (finished folds are not trained again).
Prints one JSON line: the budget, and per fold and the mean over folds of pixel
accuracy, fg IoU, fg IoU per image, mIoU and the cutout-alpha figures of METRICS.md.
Say the budget (epochs, image size, model, recipe) whenever you quote its figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from petseg import run_dir
from petseg.atomic import write_text_atomic
from petseg.data.breeds import breed_of, breeds_in, resolve_breeds
from petseg.data.layouts import load_samples
from petseg.errors import PetsegError
from petseg.metrics import ALPHA_KEYS

SCORES_FILE = "holdout.json"
FIGURES = ("pixel_accuracy", "fg_iou", "fg_iou_per_image", "miou")
# The cutout-alpha figures of METRICS.md ("Cutout alpha") of the default alpha, matting.
DEFAULT_ALPHA = "matting"
ALPHA_FIGURES = ALPHA_KEYS


def folds(breeds: list[str]) -> list[tuple[str, list[str]]]:
    """(held-out breed, training breeds) for each breed: every other breed trains."""
    if len(breeds) < 2:
        raise PetsegError(f"leave-one-breed-out needs at least two breeds, got {breeds or 'none'}")
    return [(held_out, [breed for breed in breeds if breed != held_out]) for held_out in breeds]


def fold_folder(out: Path, held_out: str) -> Path:
    return out / f"holdout-{held_out}"


def held_out_samples(data: str, breed: str, keep_suspect: bool) -> tuple[list, int]:
    """Every photo of `breed` (all splits), and how many unfit ones were left out."""
    from petseg.data.check import find_unfit

    samples = [sample for sample in load_samples(data, "all") if breed_of(sample.name) == breed]
    unfit = {found.sample.name for found in find_unfit(samples) if found.broken or not keep_suspect}
    return [sample for sample in samples if sample.name not in unfit], len(unfit)


def train_fold(args, folder: Path, training_breeds: list[str]) -> None:
    """Train (or resume, or keep) the fold's run in `folder`."""
    from petseg.train import build_config, fit

    if (folder / run_dir.SUMMARY_FILE).is_file() and args.resume:
        return  # finished earlier
    resume = args.resume and (folder / run_dir.CHECKPOINT_FILE).is_file()
    budget = {name: getattr(args, name) for name in ("epochs", "image_size", "batch_size", "threads")
              if getattr(args, name) is not None}
    overrides = {"breeds": tuple(training_breeds), "exclude_breeds": None, "train_split": "all",
                 "val_fraction": None, "keep_suspect": args.keep_suspect, "progress": False, **budget}
    if resume:  # a resumed run keeps its own settings; only how long it goes on may change
        overrides = {name: value for name, value in budget.items() if name in run_dir.RESUMABLE_SETTINGS}
    if args.config is not None and args.model is not None and not resume:
        overrides["model"] = args.model  # the config's recipe, on another architecture
    config = build_config(out=folder, model=None if resume or args.config else args.model,
                          data=None if resume else args.data,
                          recipe=None if resume else args.recipe, config_file=None if resume else args.config,
                          resume=resume, overrides=overrides)
    # With --resume, a fold stopped before its first checkpoint has nothing to resume: it starts over.
    fit(config, resume=resume, force=(args.force or args.resume) and not resume,
        log=lambda line: print(line, file=sys.stderr))


def score_fold(args, folder: Path, held_out: str) -> dict:
    """The fold's figures on its held-out breed, computed once and kept in holdout.json."""
    scores_path = folder / SCORES_FILE
    if scores_path.is_file() and args.resume:
        return json.loads(scores_path.read_text())
    from petseg.evaluate import evaluate
    from petseg.inference import Segmenter

    samples, left_out = held_out_samples(args.data, held_out, args.keep_suspect)
    segmenter = Segmenter.load(str(run_dir.best_model_file(folder)), flip_tta=args.flip_tta)
    result = evaluate(segmenter, samples, alphas=(DEFAULT_ALPHA,))
    original = result["resolutions"]["original"]
    scores = {
        "held_out": held_out,
        "num_images": result["num_images"],
        "left_out_unfit": left_out,
        "skipped_unreadable": len(result["skipped"]),
        **{name: original[name] for name in FIGURES},
        **{name: result["alpha"][DEFAULT_ALPHA][name] for name in ALPHA_FIGURES},
    }
    write_text_atomic(scores_path, json.dumps(scores, indent=2) + "\n")
    return scores


def mean_over_folds(fold_scores: list[dict]) -> dict:
    """Each figure's plain mean over folds (each breed weighs the same); None if any fold lacks it."""
    means = {}
    for name in (*FIGURES, *ALPHA_FIGURES):
        values = [scores.get(name) for scores in fold_scores]
        means[name] = None if any(value is None for value in values) else sum(values) / len(values)
    return means


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="A dataset folder whose photos are named <breed>_<number> (Oxford layout).")
    parser.add_argument("--out", required=True, type=Path, help="Folder for the folds' run folders.")
    parser.add_argument("--model", default=None,
                        help="Architecture; with --config it replaces the config's (default: the config's, else unet_efficientnet_lite0).")
    parser.add_argument("--recipe", default=None, help="seed, default or generalize (default: default).")
    parser.add_argument("--config", default=None, help="A training config JSON (a recipe file or a run folder's saved config).")
    parser.add_argument("--epochs", type=int, default=None, help="Epochs per fold (the budget).")
    parser.add_argument("--image-size", type=int, default=None, help="Training input size (the budget).")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads per training process.")
    parser.add_argument("--breeds", default=None, help="Comma-separated breeds to run folds over (default: all present).")
    parser.add_argument("--keep-suspect", action="store_true", help="Train on and score masks without pet pixels (broken files are always left out).")
    parser.add_argument("--flip-tta", action="store_true", help="Score with flip test-time augmentation.")
    parser.add_argument("--resume", action="store_true", help="Continue: keep finished folds, resume a stopped one.")
    parser.add_argument("--force", action="store_true", help="Start folds over in folders that hold earlier runs.")
    args = parser.parse_args(argv)
    if args.config is not None and args.recipe is not None:
        parser.error("give --recipe or --config, not both (a config file holds a whole recipe)")
    if args.config is None and args.model is None:
        args.model = "unet_efficientnet_lite0"
    return args


def run(args) -> dict:
    present = breeds_in(load_samples(args.data, "all"))
    chosen = resolve_breeds(args.breeds.split(","), present) if args.breeds else present
    started = time.perf_counter()
    fold_scores = []
    for held_out, training_breeds in folds(chosen):
        folder = fold_folder(args.out, held_out)
        print(f"fold: train on {', '.join(training_breeds)}; score on {held_out}", file=sys.stderr)
        train_fold(args, folder, training_breeds)
        fold_scores.append(score_fold(args, folder, held_out))
    config = json.loads((fold_folder(args.out, chosen[0]) / run_dir.CONFIG_FILE).read_text())
    return {
        "benchmark": "leave-one-breed-out",
        "data": str(args.data),
        "model": config["model"],
        "recipe": config["recipe"],
        "config": args.config,
        "epochs": config["epochs"],
        "image_size": config["image_size"],
        "batch_size": config["batch_size"],
        "resolution": "original",
        "flip_tta": args.flip_tta,
        "folds": fold_scores,
        "mean": mean_over_folds(fold_scores),
        "seconds": round(time.perf_counter() - started, 1),
    }


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        result = run(args)
    except PetsegError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    print(json.dumps(result))


if __name__ == "__main__":
    main()
