"""What a run reports: per-epoch rows and log lines, and the files beside the checkpoint.

All of it is written by rank 0 only, each file atomically.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from petseg.atomic import write_text_atomic
from petseg.run_dir import BEST_MODEL_FILE, CURVES_FILE, HISTORY_JSON_FILE, SUMMARY_FILE, writing
from petseg.train.distributed import DistributedContext
from petseg.train.recipes import TrainConfig
from petseg.train.state import RunResult

if TYPE_CHECKING:
    from petseg.train.setup import Training


def progress_bar(training: Training, epoch: int, initial: int):
    """A per-epoch bar on rank 0, drawn only on a terminal: logs get one plain line per epoch."""
    from tqdm import tqdm

    drawn = training.context.is_main and training.config.progress and sys.stderr.isatty()
    return tqdm(total=training.steps_per_epoch, initial=initial, desc=f"epoch {epoch + 1}/{training.config.epochs}",
                leave=False, dynamic_ncols=True, disable=not drawn)


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


def save_best(model, run_dir: Path) -> None:
    from petseg.models import save_model

    with writing(run_dir / BEST_MODEL_FILE):
        save_model(model, run_dir / BEST_MODEL_FILE)  # atomic: temp file + rename


def write_reports(run_dir: Path, history: list[dict[str, float]]) -> None:
    from petseg.plots import write_curves
    from petseg.train.history import write_history

    with writing(run_dir / HISTORY_JSON_FILE):
        write_history(run_dir, history)
    with writing(run_dir / CURVES_FILE):
        write_curves(history, run_dir / CURVES_FILE)


def write_summary(result: RunResult, config: TrainConfig, model, context: DistributedContext) -> None:
    """The run's summary file: what `petseg compare` reads without re-running anything."""
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
    with writing(result.run_dir / SUMMARY_FILE):
        write_text_atomic(result.run_dir / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
