"""One epoch's running loss and confusion matrix, reducible across DDP ranks."""

from __future__ import annotations

from typing import Any

from petseg.metrics import SegmentationMetrics
from petseg.train.distributed import DistributedContext, all_gather_lists, all_reduce_sum


class EpochStats:
    def __init__(self):
        self.loss_sum = 0.0
        self.images = 0
        self.steps = 0
        self.metrics = SegmentationMetrics()

    def add(self, loss: float, labels, logits, count: int | None = None) -> None:
        """A batch's mean loss and its (N, C, H, W) logits against (N, H, W) labels.

        `count`: how many of the batch's images the loss stands for (default all of them).
        """
        count = labels.shape[0] if count is None else count
        self.loss_sum += loss * count
        self.images += count
        self.metrics.update(labels, logits.argmax(dim=1))

    @property
    def mean_loss(self) -> float:
        return self.loss_sum / self.images if self.images else float("nan")

    def reduce(self, context: DistributedContext) -> tuple[float, dict[str, float]]:
        """(mean loss, metrics) over the whole split, i.e. summed over every rank."""
        import torch

        if context.enabled:
            totals = torch.tensor([self.loss_sum, float(self.images)], dtype=torch.float64)
            matrix = torch.from_numpy(self.metrics.matrix.copy())
            all_reduce_sum(context, totals)
            all_reduce_sum(context, matrix)
            merged = SegmentationMetrics(num_classes=self.metrics.num_classes)
            merged.matrix = matrix.numpy()
            merged.per_image_fg_iou = all_gather_lists(context, self.metrics.per_image_fg_iou)
            loss_sum, images = totals.tolist()
            return (loss_sum / images if images else float("nan")), merged.compute()
        return self.mean_loss, self.metrics.compute()

    def state_dict(self) -> dict[str, Any]:
        import torch

        return {"loss_sum": self.loss_sum, "images": self.images, "steps": self.steps,
                "matrix": torch.from_numpy(self.metrics.matrix.copy()),
                "per_image_fg_iou": list(self.metrics.per_image_fg_iou)}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "EpochStats":
        stats = cls()
        stats.loss_sum, stats.images, stats.steps = state["loss_sum"], state["images"], state["steps"]
        stats.metrics.matrix = state["matrix"].numpy().copy()
        stats.metrics.per_image_fg_iou = list(state["per_image_fg_iou"])
        return stats
