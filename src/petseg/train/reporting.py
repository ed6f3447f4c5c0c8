"""What a run reports: per-epoch rows and log lines, and the files beside the checkpoint.

All of it is written by rank 0 only, each file atomically.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING

from petseg.errors import PetsegError
from petseg.atomic import write_text_atomic
from petseg.train.checkpoint import CHECKPOINT_NAME
from petseg.train.distributed import DistributedContext
from petseg.train.recipes import TrainConfig

if TYPE_CHECKING:
    from petseg.train.loop import RunResult

RUN_FILES = ("config.json", CHECKPOINT_NAME, "best.safetensors", "history.csv", "history.json",
             "curves.png", "summary.json")


def epoch_row(epoch: int, lr: float, seconds: float, train: tuple, val: tuple) -> dict[str, float]:
    row = {"epoch": epoch, "lr": lr, "seconds": round(seconds, 3)}
    for prefix, (loss, metrics) in (("train", train), ("val", val)):
        row[f"{prefix}_loss"] = loss
        row.update({f"{prefix}_{name}": value for name, value in metrics.items()})
    return row


def summary_line(row: dict[str, float], epochs: int, improved: bool) -> str:
    def part(prefix):
        return (f"{prefix} loss {row[f'{prefix}_loss']:.4f} acc {row[f'{prefix}_pixel_accuracy']:.4f} "
                f"mIoU {row[f'{prefix}_miou']:.4f} fgIoU {row[f'{prefix}_fg_iou']:.4f}")

    return (f"epoch {row['epoch']}/{epochs}  {part('train')} | {part('val')} | lr {row['lr']:.2e} | "
            f"{row['seconds']:.1f}s{'  *best' if improved else ''}")


def prepare_run_dir(run_dir: Path, *, resume: bool, force: bool, is_main: bool) -> None:
    if resume:
        if not (run_dir / CHECKPOINT_NAME).is_file():
            raise PetsegError(f"{run_dir}: nothing to resume (no {CHECKPOINT_NAME}); drop --resume to start a run")
        return
    existing = [name for name in RUN_FILES if (run_dir / name).exists()]
    if existing and not force:
        raise PetsegError(f"{run_dir}: already holds a run ({existing[0]}); use --resume to continue it "
                          "or --force to start over")
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        for name in existing:  # a stale checkpoint must not be resumed into the new run
            (run_dir / name).unlink()


# Settings a checkpoint cannot be resumed under once changed: the model and its
# optimisation, and what decides the data and its order (a partial epoch skips the
# batches already seen, which only means the same thing with the same order).
RESUME_FIXED = ("model", "image_size", "model_options", "freeze_encoder", "loss", "optimizer", "batch_size",
                "seed", "data", "val_fraction", "train_split")


def _same(name: str, old, new) -> bool:
    if name == "data" and old is not None and new is not None:
        return Path(old).expanduser().resolve() == Path(new).expanduser().resolve()
    return old == new


def check_resumable(checkpoint: dict, config: TrainConfig, run_dir: Path, world_size: int) -> None:
    """Refuse to resume a checkpoint under settings that would make it a different run."""
    saved, current = checkpoint["config"], asdict(config)
    # A setting newer than the checkpoint held its default value there.
    defaults = {field.name: field.default for field in fields(TrainConfig)}
    for name in RESUME_FIXED:
        old, new = saved.get(name, defaults[name]), current[name]
        if not _same(name, old, new):
            raise PetsegError(f"{run_dir}: the checkpoint was trained with {name}={old!r}, not {new!r}; "
                              "resume with the run's own settings")
    saved_world_size = checkpoint.get("world_size")
    if saved_world_size is not None and saved_world_size != world_size:
        raise PetsegError(f"{run_dir}: the checkpoint was trained by {saved_world_size} process(es), not "
                          f"{world_size}; resume with the same number of processes")


def save_best(model, run_dir: Path) -> None:
    from petseg.models import save_model

    save_model(model, run_dir / "best.safetensors")  # atomic: temp file + rename


def write_reports(run_dir: Path, history: list[dict[str, float]]) -> None:
    from petseg.plots import write_curves
    from petseg.train.history import write_history

    write_history(run_dir, history)
    write_curves(history, run_dir / "curves.png")


def write_summary(result: RunResult, config: TrainConfig, model, context: DistributedContext) -> None:
    """summary.json: what `petseg compare` reads without re-running anything."""
    from petseg.models.summary import count_parameters

    parameters, trainable = count_parameters(model)
    summary = {
        "model": config.model,
        "recipe": config.recipe,
        "image_size": config.image_size,
        "parameters": parameters,
        "trainable_parameters": trainable,
        "epochs": result.epochs_completed,
        "best_epoch": result.best_epoch,
        "train_seconds": round(result.train_seconds, 2),
        "stopped_reason": result.stopped_reason,
        "processes": context.world_size,
        "best_val": result.best_metrics,
    }
    write_text_atomic(result.run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
