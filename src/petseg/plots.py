"""Training curves and the comparison bar chart, as PNG files (matplotlib, Agg).

The figures are drawn on a Figure object, never through pyplot's global state, so
they are safe in servers and threads and need no display.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from petseg.atomic import atomic_path

# (title, history key without the train_/val_ prefix); the notebook plotted the first two.
CURVE_PANELS = (("loss", "loss"), ("pixel accuracy", "pixel_accuracy"), ("mIoU", "miou"))


def _save(figure, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=110, bbox_inches="tight")
    return path


def write_curves(history: Sequence[dict[str, float]], path: str | Path) -> Path:
    """Loss, pixel accuracy and mIoU per epoch, training against validation."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [row["epoch"] for row in history]
    figure = Figure(figsize=(13, 3.8))
    for axes, (title, key) in zip(figure.subplots(1, len(CURVE_PANELS)), CURVE_PANELS):
        for split, style in (("train", "-o"), ("val", "-s")):
            values = [row.get(f"{split}_{key}", float("nan")) for row in history]
            axes.plot(epochs, values, style, markersize=3, label=split)
        axes.set_title(title)
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
        axes.legend()
    return _save(figure, path)


def write_comparison_chart(names: Sequence[str], metrics: dict[str, Sequence[float]], path: str | Path) -> Path:
    """Grouped bars: one group per metric (e.g. pixel accuracy, mIoU, fg IoU), one bar per run."""
    import numpy as np
    from matplotlib.figure import Figure

    figure = Figure(figsize=(max(6.0, 1.6 * len(metrics) * max(1, len(names)) ** 0.5 + 3), 4.2))
    axes = figure.subplots()
    positions = np.arange(len(metrics))
    width = 0.8 / max(1, len(names))
    for index, name in enumerate(names):
        values = [metrics[metric][index] for metric in metrics]
        bars = axes.bar(positions + (index - (len(names) - 1) / 2) * width, values, width, label=name)
        axes.bar_label(bars, fmt="%.3f", fontsize=7, padding=1)
    axes.set_xticks(positions, list(metrics))
    axes.set_ylim(0, 1.05)
    axes.set_ylabel("best validation value")
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize=8, loc="lower right")
    return _save(figure, path)
