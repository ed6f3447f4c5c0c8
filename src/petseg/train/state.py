"""What the epoch loop carries from one epoch to the next, and what a run returns.

LoopState is saved into the checkpoint and restored from it whole (state_dict /
load_state_dict), so saving and restoring cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from petseg.errors import quoted
from petseg.limits import finite_float, is_whole_number
from petseg.run_dir import BEST_MODEL_FILE
from petseg.train.early_stopping import EarlyStopping


@dataclass
class LoopState:
    early_stopping: EarlyStopping
    epoch: int = 0  # epochs finished
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0  # 1-based; 0 while no epoch has finished
    best_miou: float = -1.0
    train_seconds: float = 0.0
    # Set when a run stopped mid-epoch (Ctrl-C): that epoch's statistics so far and its seconds.
    partial_epoch: dict[str, Any] | None = None

    def record(self, row: dict[str, float]) -> tuple[bool, bool]:
        """Add a finished epoch's row: (is it the best so far, should training stop early)."""
        self.history.append(row)
        self.epoch = int(row["epoch"])
        improved = row["val_miou"] > self.best_miou
        if improved:
            self.best_epoch, self.best_miou = self.epoch, row["val_miou"]
        return improved, self.early_stopping.update(row)

    def best_metrics(self) -> dict[str, float]:
        """The best epoch's validation metrics, without the `val_` prefix."""
        if not self.best_epoch:
            return {}
        row = self.history[self.best_epoch - 1]
        return {key[len("val_"):]: value for key, value in row.items() if key.startswith("val_")}

    def state_dict(self) -> dict[str, Any]:
        # Top-level checkpoint keys since checkpoint format 1, so older checkpoints resume.
        return {"epoch": self.epoch, "history": list(self.history), "best_epoch": self.best_epoch,
                "best_miou": self.best_miou, "train_seconds": self.train_seconds,
                "partial_epoch": self.partial_epoch, "early_stopping": self.early_stopping.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_loop_state(state)
        self.epoch, self.history = int(state["epoch"]), list(state["history"])
        self.best_epoch, self.best_miou = int(state["best_epoch"]), float(state["best_miou"])
        self.train_seconds, self.partial_epoch = float(state["train_seconds"]), state["partial_epoch"]
        self.early_stopping.load_state_dict(state["early_stopping"])


def _is_finite(value: Any) -> bool:
    return finite_float(value) is not None


def check_loop_state(state: dict[str, Any]) -> None:
    """ValueError naming what does not add up in a checkpoint's loop state (crafted or damaged),
    before an epoch is spent training on it."""
    epoch, history = state["epoch"], state["history"]
    if not (is_whole_number(epoch, 0) and isinstance(history, list) and epoch == len(history)):
        shown = f"{len(history)} rows" if isinstance(history, list) else type(history).__name__
        raise ValueError(f"its epoch {quoted(epoch)} and its history ({shown}) do not agree")
    for row in history:
        if not (isinstance(row, dict) and {"epoch", "val_miou"} <= row.keys()
                and all(isinstance(key, str) and _is_finite(value) for key, value in row.items())):
            raise ValueError(f"a history row is not an epoch's figures: {quoted(row)}")
    best_epoch = state["best_epoch"]
    if not (is_whole_number(best_epoch, 0, epoch) and _is_finite(state["best_miou"])):
        shown = f"{quoted(best_epoch)} with mIoU {quoted(state['best_miou'])}"
        raise ValueError(f"its best epoch ({shown}) is not valid")
    if not (_is_finite(state["train_seconds"]) and state["train_seconds"] >= 0):
        raise ValueError(f"its training time {quoted(state['train_seconds'])} is not valid")
    partial = state["partial_epoch"]
    if partial is not None:
        from petseg.train.epoch_stats import EpochStats

        saved, seconds = (partial.get("stats"), partial.get("seconds")) if isinstance(partial, dict) else (None, None)
        if not (isinstance(saved, dict) and _is_finite(seconds)):
            raise ValueError(f"its unfinished epoch is not one: {quoted(partial)}")
        stats = EpochStats.from_state_dict(saved)  # KeyError or TypeError if it is not
        if not (is_whole_number(stats.steps, 0) and is_whole_number(stats.images, 0)):
            raise ValueError(f"its unfinished epoch counts {quoted(stats.steps)} steps")


@dataclass
class RunResult:
    run_dir: Path
    epochs_completed: int
    best_epoch: int  # 1-based; 0 when no epoch finished
    best_metrics: dict[str, float]  # validation metrics of the best epoch
    train_seconds: float
    stopped_reason: str
    interrupted: bool = False
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def best_model_path(self) -> Path:
        return self.run_dir / BEST_MODEL_FILE
