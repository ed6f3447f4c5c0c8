"""Losses over logits (N, C, H, W) and labels (N, H, W); IGNORE_INDEX pixels never count."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from petseg.data.labels import IGNORE_INDEX


class DiceLoss(nn.Module):
    """1 - mean soft Dice over classes, accumulated over the whole batch.

    Batch-level sums (not per-image) keep the gradient stable when a class is absent
    from one image; `smooth` keeps an absent class from dividing by zero.
    """

    def __init__(self, smooth: float = 1.0):
        super().__init__()
        self.smooth = smooth

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        num_classes = logits.shape[1]
        valid = (labels != IGNORE_INDEX).unsqueeze(1)
        probabilities = logits.float().softmax(dim=1) * valid
        one_hot = F.one_hot(labels.masked_fill(~valid.squeeze(1), 0), num_classes).permute(0, 3, 1, 2) * valid
        dims = (0, 2, 3)
        intersection = (probabilities * one_hot).sum(dims)
        cardinality = probabilities.sum(dims) + one_hot.sum(dims)
        dice = (2 * intersection + self.smooth) / (cardinality + self.smooth)
        return 1 - dice.mean()


class DiceCrossEntropyLoss(nn.Module):
    def __init__(self, dice_weight: float = 1.0):
        super().__init__()
        self.cross_entropy = nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
        self.dice = DiceLoss()
        self.dice_weight = dice_weight

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.cross_entropy(logits, labels) + self.dice_weight * self.dice(logits, labels)


def make_loss(name: str) -> nn.Module:
    if name == "dice_ce":
        return DiceCrossEntropyLoss()
    return nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
