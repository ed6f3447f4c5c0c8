"""TensorBoard scalars in the run folder, beside the history files and the curves.

Written when `tensorboard` is installed (the `[train]` extra); otherwise nothing is
written and training goes on. `tensorboard --logdir runs/` shows every run's curves.
"""

from __future__ import annotations

from pathlib import Path

from petseg.run_dir import TENSORBOARD_FOLDER

# TensorBoard tag -> history column. Train and validation share a chart per quantity.
TAGS = {
    "loss/train": "train_loss", "loss/val": "val_loss",
    "accuracy/train": "train_pixel_accuracy", "accuracy/val": "val_pixel_accuracy",
    "miou/train": "train_miou", "miou/val": "val_miou",
    "fg_iou/train": "train_fg_iou", "fg_iou/val": "val_fg_iou",
    "lr": "lr",
}


class ScalarLog:
    """One point per epoch for each of TAGS; a no-op without tensorboard or off rank 0."""

    def __init__(self, run_dir: str | Path, *, first_epoch: int = 1, enabled: bool = True):
        self.writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            return
        # purge_step: a resumed run hides the points an interrupted run wrote past its checkpoint.
        self.writer = SummaryWriter(str(Path(run_dir) / TENSORBOARD_FOLDER), purge_step=first_epoch)

    def add_epoch(self, row: dict[str, float]) -> None:
        if self.writer is None:
            return
        for tag, column in TAGS.items():
            if column in row:
                self.writer.add_scalar(tag, row[column], int(row["epoch"]))
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def __enter__(self) -> "ScalarLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
