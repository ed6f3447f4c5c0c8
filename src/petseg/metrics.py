"""Segmentation metrics from one confusion matrix, exactly as METRICS.md defines them.

Everything accumulates over a whole split: per-batch averages of IoU would weight
small images like large ones. Pixels labelled IGNORE_INDEX never count.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from petseg.data.labels import BACKGROUND, CLASS_NAMES, IGNORE_INDEX, PET


def confusion_matrix(labels, predictions, num_classes: int = 3) -> np.ndarray:
    """(C, C) int64 counts, rows = true class, columns = predicted class.

    Accepts numpy arrays or torch tensors of any matching shape.
    """
    labels = np.asarray(labels.cpu() if hasattr(labels, "cpu") else labels).ravel()
    predictions = np.asarray(predictions.cpu() if hasattr(predictions, "cpu") else predictions).ravel()
    valid = labels != IGNORE_INDEX
    index = labels[valid].astype(np.int64) * num_classes + predictions[valid].astype(np.int64)
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _iou(intersection, union) -> float:
    # A class absent from both labels and predictions is perfectly segmented.
    return float(intersection / union) if union else 1.0


def foreground_iou(matrix: np.ndarray) -> float:
    """Pet-vs-background IoU with pet = {pet, border}, from a 3-class confusion matrix."""
    foreground = [index for index in range(matrix.shape[0]) if index != BACKGROUND]
    true_fg = matrix[foreground].sum(axis=0)  # predicted class counts among true foreground
    tp = true_fg[foreground].sum()
    fn = true_fg[BACKGROUND]
    fp = matrix[BACKGROUND, foreground].sum()
    return _iou(tp, tp + fp + fn)


@dataclass
class SegmentationMetrics:
    """Accumulates a split's confusion matrix and per-image foreground IoUs."""

    num_classes: int = 3
    class_names: tuple[str, ...] = CLASS_NAMES
    matrix: np.ndarray = field(default=None)
    per_image_fg_iou: list[float] = field(default_factory=list)

    def __post_init__(self):
        if self.matrix is None:
            self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def update(self, labels, predictions) -> None:
        """Add a batch (N, H, W) or one image (H, W) of labels and predicted classes."""
        labels = np.asarray(labels.cpu() if hasattr(labels, "cpu") else labels)
        predictions = np.asarray(predictions.cpu() if hasattr(predictions, "cpu") else predictions)
        if labels.ndim == 2:
            labels, predictions = labels[None], predictions[None]
        for image_labels, image_predictions in zip(labels, predictions):
            image_matrix = confusion_matrix(image_labels, image_predictions, self.num_classes)
            self.matrix += image_matrix
            if image_matrix.any():  # an image with no labelled pixel has nothing to score
                self.per_image_fg_iou.append(foreground_iou(image_matrix))

    def merge(self, other: "SegmentationMetrics") -> None:
        self.matrix += other.matrix
        self.per_image_fg_iou.extend(other.per_image_fg_iou)

    def compute(self) -> dict[str, float]:
        matrix = self.matrix
        tp = np.diag(matrix).astype(np.float64)
        fp = matrix.sum(axis=0) - tp
        fn = matrix.sum(axis=1) - tp
        total = matrix.sum()
        result = {"pixel_accuracy": float(tp.sum() / total) if total else 0.0}
        ious = [_iou(tp[c], tp[c] + fp[c] + fn[c]) for c in range(self.num_classes)]
        for name, value in zip(self.class_names, ious):
            result[f"iou_{name}"] = value
        result["miou"] = float(np.mean(ious))
        result["fg_iou"] = foreground_iou(matrix)
        result["fg_iou_per_image"] = float(np.mean(self.per_image_fg_iou)) if self.per_image_fg_iou else 0.0
        for c, name in enumerate(self.class_names):
            denominator = 2 * tp[c] + fp[c] + fn[c]
            result[f"dice_{name}"] = float(2 * tp[c] / denominator) if denominator else 1.0
        return result


# Cutout alpha (METRICS.md "Cutout alpha"): the alpha a cutout writes, scored on the
# trimap's known pixels only. Thresholds are on alpha in 0..1.
OPAQUE = 0.9
CLEAR = 0.1
ALPHA_KEYS = ("alpha_mae", "pet_opaque", "bg_clear", "semi_known")


@dataclass
class AlphaMetrics:
    """Accumulates pixel counts over a split, so large photos weigh as many pixels as they have."""

    error_sum: float = 0.0
    pet_pixels: int = 0
    pet_opaque_pixels: int = 0
    background_pixels: int = 0
    background_clear_pixels: int = 0
    semi_pixels: int = 0

    def update(self, labels: np.ndarray, alpha: np.ndarray) -> None:
        """labels (H, W) class indices; alpha (H, W) uint8 (0..255) or float (0..1), same size."""
        if labels.shape != alpha.shape:
            raise ValueError(f"alpha {alpha.shape} and labels {labels.shape} differ in size")
        alpha = alpha / 255.0 if alpha.dtype == np.uint8 else np.asarray(alpha, np.float64)
        pet = alpha[labels == PET]
        background = alpha[labels == BACKGROUND]
        self.error_sum += float((1.0 - pet).sum() + background.sum())
        self.pet_pixels += pet.size
        self.pet_opaque_pixels += int((pet >= OPAQUE).sum())
        self.background_pixels += background.size
        self.background_clear_pixels += int((background <= CLEAR).sum())
        self.semi_pixels += int(((pet > CLEAR) & (pet < OPAQUE)).sum() + ((background > CLEAR) & (background < OPAQUE)).sum())

    def merge(self, other: "AlphaMetrics") -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def compute(self) -> dict[str, float]:
        known = self.pet_pixels + self.background_pixels
        # With nothing to score, a share is perfect (as an absent class's IoU is).
        share = lambda part, whole, empty: float(part / whole) if whole else empty  # noqa: E731
        return {
            "alpha_mae": share(self.error_sum, known, 0.0),
            "pet_opaque": share(self.pet_opaque_pixels, self.pet_pixels, 1.0),
            "bg_clear": share(self.background_clear_pixels, self.background_pixels, 1.0),
            "semi_known": share(self.semi_pixels, known, 0.0),
        }
