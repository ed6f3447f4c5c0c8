"""petseg.metrics against confusion matrices counted by hand (METRICS.md definitions)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from petseg.data.labels import IGNORE_INDEX
from petseg.metrics import SegmentationMetrics, confusion_matrix, foreground_iou

X = IGNORE_INDEX
# 0 pet, 1 background, 2 border. One ignored pixel, which must not count anywhere.
LABELS = np.array([[0, 0, 1], [1, 2, X]], dtype=np.uint8)
PREDICTIONS = np.array([[0, 1, 1], [1, 2, 0]], dtype=np.uint8)
# Counted by hand, rows = truth, columns = prediction:
#   pet:        1 pet, 1 background
#   background: 2 background
#   border:     1 border
HAND_MATRIX = np.array([[1, 1, 0], [0, 2, 0], [0, 0, 1]])
TOLERANCE = 1e-12


def test_confusion_matrix_matches_hand_count_and_skips_ignored_pixels():
    np.testing.assert_array_equal(confusion_matrix(LABELS, PREDICTIONS), HAND_MATRIX)


def test_torch_tensors_give_the_same_matrix():
    matrix = confusion_matrix(torch.from_numpy(LABELS).long(), torch.from_numpy(PREDICTIONS).long())
    np.testing.assert_array_equal(matrix, HAND_MATRIX)


def test_every_metric_matches_the_hand_computation():
    metrics = SegmentationMetrics()
    metrics.update(LABELS, PREDICTIONS)
    result = metrics.compute()
    expected = {
        "pixel_accuracy": 4 / 5,
        "iou_pet": 1 / (1 + 0 + 1),  # TP 1, FP 0, FN 1
        "iou_background": 2 / (2 + 1 + 0),  # TP 2, FP 1 (a pet pixel), FN 0
        "iou_border": 1.0,
        "miou": (1 / 2 + 2 / 3 + 1) / 3,
        # pet = {pet, border}: 3 true foreground pixels, 2 predicted foreground, 0 false alarms.
        "fg_iou": 2 / 3,
        "fg_iou_per_image": 2 / 3,
        "dice_pet": 2 * 1 / (2 * 1 + 0 + 1),
        "dice_background": 2 * 2 / (2 * 2 + 1 + 0),
        "dice_border": 1.0,
    }
    for name, value in expected.items():
        assert result[name] == pytest.approx(value, abs=TOLERANCE), name


def test_border_predicted_as_pet_is_foreground_agreement():
    labels = np.array([[2, 2, 1, 1]])
    predictions = np.array([[0, 2, 0, 1]])
    # Foreground truth {0, 1}, predicted foreground {0, 1, 2}: TP 2, FP 1, FN 0.
    assert foreground_iou(confusion_matrix(labels, predictions)) == pytest.approx(2 / 3, abs=TOLERANCE)
    result = SegmentationMetrics()
    result.update(labels, predictions)
    assert result.compute()["iou_border"] == pytest.approx(1 / 2, abs=TOLERANCE)  # TP 1, FN 1


def test_split_metrics_pool_pixels_while_per_image_fg_iou_averages_images():
    small_perfect = (np.array([[0, 1]]), np.array([[0, 1]]))  # fg IoU 1
    large_poor = (np.zeros((1, 8), np.uint8), np.array([[0, 0, 1, 1, 1, 1, 1, 1]]))  # fg IoU 2/8
    metrics = SegmentationMetrics()
    for labels, predictions in (small_perfect, large_poor):
        metrics.update(labels, predictions)
    result = metrics.compute()
    assert result["fg_iou"] == pytest.approx((1 + 2) / (1 + 8), abs=TOLERANCE)  # pooled: TP 3, FN 6
    assert result["fg_iou_per_image"] == pytest.approx((1 + 2 / 8) / 2, abs=TOLERANCE)
    assert result["pixel_accuracy"] == pytest.approx(4 / 10, abs=TOLERANCE)


def test_a_batch_counts_each_image_separately():
    labels = np.stack([LABELS, LABELS])
    predictions = np.stack([PREDICTIONS, LABELS.clip(max=2)])
    metrics = SegmentationMetrics()
    metrics.update(labels, predictions)
    np.testing.assert_array_equal(metrics.matrix, HAND_MATRIX + np.diag([2, 2, 1]))
    assert len(metrics.per_image_fg_iou) == 2
    assert metrics.compute()["fg_iou_per_image"] == pytest.approx((2 / 3 + 1) / 2, abs=TOLERANCE)


def test_merge_equals_one_accumulator_over_everything():
    rng = np.random.default_rng(0)
    batches = [(rng.integers(0, 3, (2, 5, 7)), rng.integers(0, 3, (2, 5, 7))) for _ in range(4)]
    together, first, second = SegmentationMetrics(), SegmentationMetrics(), SegmentationMetrics()
    for index, (labels, predictions) in enumerate(batches):
        together.update(labels, predictions)
        (first if index < 2 else second).update(labels, predictions)
    first.merge(second)
    np.testing.assert_array_equal(first.matrix, together.matrix)
    for name, value in together.compute().items():
        assert first.compute()[name] == pytest.approx(value, abs=TOLERANCE), name


def test_class_absent_from_labels_and_predictions_counts_as_perfect():
    metrics = SegmentationMetrics()
    metrics.update(np.array([[0, 1]]), np.array([[0, 1]]))
    result = metrics.compute()
    assert result["iou_border"] == 1.0 and result["dice_border"] == 1.0
    assert result["miou"] == pytest.approx(1.0, abs=TOLERANCE)


def test_image_without_labelled_pixels_does_not_count_in_per_image_fg_iou():
    metrics = SegmentationMetrics()
    metrics.update(np.full((2, 2), X), np.zeros((2, 2)))  # only padding: nothing to score
    metrics.update(np.array([[0, 1]]), np.array([[1, 1]]))  # fg IoU 0
    assert metrics.matrix.sum() == 2
    assert metrics.compute()["fg_iou_per_image"] == pytest.approx(0.0, abs=TOLERANCE)


# --- cutout alpha (METRICS.md "Cutout alpha") ------------------------------------------


def test_alpha_metrics_match_hand_counts_and_weigh_pixels_not_images():
    from petseg.metrics import AlphaMetrics

    labels = np.array([[0, 0, 1], [1, 2, 0]], np.uint8)  # pet, pet, bg / bg, border (ignored), pet
    alpha = np.array([[255, 200, 0], [30, 128, 100]], np.uint8)
    metrics = AlphaMetrics()
    metrics.update(labels, alpha)
    # pet alphas 1, 200/255, 100/255; background 0, 30/255; the border pixel is left out.
    error = (0 + 55 / 255 + 155 / 255) + (0 + 30 / 255)
    expected = {"alpha_mae": error / 5, "pet_opaque": 1 / 3, "bg_clear": 1 / 2, "semi_known": 3 / 5}
    for key, value in expected.items():
        assert metrics.compute()[key] == pytest.approx(value, abs=1e-12), key
    # A second, one-pixel image counts as one pixel, not as half of the split.
    metrics.update(np.array([[0]], np.uint8), np.array([[1.0]]))
    expected = {"alpha_mae": error / 6, "pet_opaque": 2 / 4, "bg_clear": 1 / 2, "semi_known": 3 / 6}
    for key, value in expected.items():
        assert metrics.compute()[key] == pytest.approx(value, abs=1e-12), key


def test_alpha_metrics_thresholds_are_inclusive_and_float_alpha_is_0_to_1():
    from petseg.metrics import AlphaMetrics

    metrics = AlphaMetrics()
    metrics.update(np.array([[0, 1, 255]], np.uint8), np.array([[0.9, 0.1, 0.5]]))  # 255: ignored pixel
    assert metrics.compute() == pytest.approx({"alpha_mae": 0.1, "pet_opaque": 1.0, "bg_clear": 1.0, "semi_known": 0.0})
    merged = AlphaMetrics()
    merged.merge(metrics)
    assert merged.compute() == metrics.compute()
    assert AlphaMetrics().compute() == {"alpha_mae": 0.0, "pet_opaque": 1.0, "bg_clear": 1.0, "semi_known": 0.0}
    with pytest.raises(ValueError, match="differ in size"):
        metrics.update(np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.uint8))
