"""Early stopping on several monitored quantities at once.

The reference notebook stacked two Keras callbacks (patience 5 on `loss` and on
`val_loss`): training stops as soon as either runs out of patience. One object with
a counter per monitor does the same and saves into the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Quantities that improve upwards; everything else (losses) improves downwards.
MAXIMISED = {"val_miou", "val_pixel_accuracy", "val_fg_iou"}


@dataclass
class EarlyStopping:
    monitors: tuple[str, ...]
    patience: int
    min_delta: float = 0.0
    best: dict[str, float] = field(default_factory=dict)
    epochs_without_improvement: dict[str, int] = field(default_factory=dict)

    def update(self, values: dict[str, float]) -> bool:
        """Record one epoch's values; True when training should stop."""
        for name in self.monitors:
            value = values[name]
            sign = 1.0 if name in MAXIMISED else -1.0
            best = self.best.get(name)
            if best is None or sign * (value - best) > self.min_delta:
                self.best[name] = value
                self.epochs_without_improvement[name] = 0
            else:
                self.epochs_without_improvement[name] = self.epochs_without_improvement.get(name, 0) + 1
        return self.should_stop

    @property
    def should_stop(self) -> bool:
        return any(count >= self.patience for count in self.epochs_without_improvement.values())

    def reason(self) -> str:
        exhausted = [name for name, count in self.epochs_without_improvement.items() if count >= self.patience]
        return f"no improvement in {', '.join(exhausted)} for {self.patience} epochs" if exhausted else ""

    def state_dict(self) -> dict:
        return {"best": dict(self.best), "epochs_without_improvement": dict(self.epochs_without_improvement)}

    def load_state_dict(self, state: dict) -> None:
        self.best = dict(state["best"])
        self.epochs_without_improvement = dict(state["epochs_without_improvement"])
