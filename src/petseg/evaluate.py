"""Evaluate a model on a dataset split, at two resolutions (METRICS.md).

- `model`: the letterboxed square the network sees, labels resized nearest and padding
  ignored. This is what training's validation reports.
- `original`: probabilities upsampled to each photo's size exactly as a cutout does
  (Prediction.labels) and compared with its own trimap. This is what a user of a cutout sees.

`evaluate()` is the one implementation behind `petseg evaluate`, the demo and the
benchmarks; `prediction_grid_png()` draws the reference notebook's four columns (`write_prediction_grid()`
writes them to a file).
"""

from __future__ import annotations

import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from petseg.data.labels import CLASS_NAMES
from petseg.errors import PetsegError, quoted
from petseg.atomic import write_bytes_atomic
from petseg.inference.compose import check_trimap_classes
from petseg.inference.compose import ALPHAS
from petseg.inference.render import cutout_alpha
from petseg.inference.segmenter import DEFAULT_BATCH_SIZE, Segmenter
from petseg.models.config import ModelConfig
from petseg.metrics import ALPHA_KEYS, AlphaMetrics, SegmentationMetrics
from petseg.limits import MAX_BATCH_SIZE, check_whole_number

RESOLUTIONS = ("model", "original")
# Rows of the prediction grid. Each keeps its photo at full size until the grid is drawn, and
# each adds 240 pixels to the figure's height: 300 rows took 2.8 GB, and matplotlib refuses
# an image over 65,536 pixels (273 rows) after all the evaluation's work.
MAX_EXAMPLES = 24
SUMMARY_KEYS = ("pixel_accuracy", "miou", "fg_iou", "fg_iou_per_image")


@dataclass
class Example:
    """One row of the prediction grid, at the photo's original size."""

    photo: np.ndarray  # (H, W, 3) uint8
    labels: np.ndarray  # (H, W) class indices, 255 = ignored
    predicted: np.ndarray  # (H, W) class indices
    alpha: np.ndarray  # (H, W) uint8


MODEL_KINDS = "a Segmenter, a model path or a petseg model"


def as_segmenter(model_or_segmenter) -> Segmenter:
    """The Segmenter evaluate() runs: a Segmenter as it is, a path (str or os.PathLike: a run
    folder, .safetensors or .onnx file) loaded by Segmenter.load, an in-memory petseg model
    (PyTorch, as create_model/load_model give) wrapped by Segmenter.from_model."""
    model = model_or_segmenter
    if isinstance(model, Segmenter):
        return model
    if isinstance(model, (str, os.PathLike)):
        return Segmenter.load(model)
    torch = sys.modules.get("torch")  # not imported: no object can be a torch module
    if torch is not None and isinstance(model, torch.nn.Module):
        if not isinstance(getattr(model, "config", None), ModelConfig):
            raise PetsegError(f"is a {type(model).__name__} that has no petseg config (give a model of "
                              "petseg.create_model or load_model, or its file)", option="model_or_segmenter")
        return Segmenter.from_model(model)
    advice = "for the bundled model, pass Segmenter.load()" if model is None else "e.g. Segmenter.load(path)"
    raise PetsegError(f"must be {MODEL_KINDS}, got {type(model).__name__} ({advice})", option="model_or_segmenter")


def check_samples(samples) -> None:
    """Refuse samples that are not a non-empty list or tuple of Sample: a folder's characters,
    a generator (no len()), paths (no masks)."""
    from petseg.data.layouts import Sample

    if not isinstance(samples, (list, tuple)):
        folder = isinstance(samples, (str, os.PathLike))
        advice = "for a dataset folder, pass load_samples(folder, split)" if folder else "pass list(samples)"
        raise PetsegError(f"must be a list or tuple of petseg.data.layouts.Sample, got {type(samples).__name__} "
                          f"({advice})", option="samples")
    for index, sample in enumerate(samples):
        if not isinstance(sample, Sample):
            raise PetsegError(f"must hold petseg.data.layouts.Sample (load_samples(folder, split) makes them), "
                              f"item {index} is {type(sample).__name__} {quoted(sample)}", option="samples")
    if not samples:
        raise PetsegError("is empty: there is nothing to evaluate", option="samples")


def check_alphas(alphas) -> tuple[str, ...]:
    """The cutout alphas to score, each once, in order; a text ("hard") or None refused."""
    if not isinstance(alphas, (list, tuple)):
        if isinstance(alphas, str):
            advice = f"for one, pass [{quoted(alphas)}]"
        elif isinstance(alphas, (set, frozenset)):
            advice = "a set has no order: pass a list"
        else:
            advice = "e.g. ['matting', 'hard']"
        raise PetsegError(f"must be a list or tuple of {', '.join(ALPHAS)}, got {type(alphas).__name__} ({advice})",
                          option="alphas")
    for kind in alphas:
        if not isinstance(kind, str) or kind not in ALPHAS:
            raise PetsegError(f"holds {quoted(kind)}, which is not one of {', '.join(ALPHAS)}", option="alphas")
    return tuple(dict.fromkeys(alphas))


def evaluate(
    model_or_segmenter,
    samples: Sequence,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    examples: int = 0,
    alphas: Sequence[str] = ALPHAS,
    on_batch: Callable[[int], None] = lambda count: None,
) -> dict:
    """Metrics of a model over `samples`, a list or tuple of petseg.data.layouts.Sample
    (`load_samples(folder, split)`).

    model_or_segmenter: a Segmenter (its backend and flip_tta are used as they are); a path
    (str or os.PathLike) to a run folder, .safetensors or .onnx file, loaded with
    Segmenter.load(path) (default backend and flip_tta); or an in-memory petseg model (PyTorch).
    For the bundled model pass Segmenter.load(). `alphas`: a list or tuple of "matting",
    "hard", "soft". Arguments of the wrong kind raise PetsegError naming them, before any
    model loads.

    Returns {"model": ..., "image_size", "num_images", "skipped": [reasons],
    "resolutions": {"model": metrics, "original": metrics}, "alpha": {kind: alpha metrics},
    "flip_tta": {"labels" or kind: bool}, "examples": [Example]}, each class-metrics dict
    holding every METRICS.md figure plus "confusion_matrix" (rows = true class); "alpha"
    scores the cutout alpha of each kind in `alphas` at original resolution (METRICS.md
    "Cutout alpha"); "flip_tta" says which predictions averaged in the mirrored photo; the
    examples show the first kind. Unreadable samples are skipped and listed, not fatal.
    """
    from petseg.data.layouts import load_sample

    check_whole_number(batch_size, "batch_size", 1, MAX_BATCH_SIZE)
    check_whole_number(examples, "examples", 0, MAX_EXAMPLES)
    alphas = check_alphas(alphas)
    if not callable(on_batch):
        raise PetsegError(f"must be callable, got {type(on_batch).__name__}", option="on_batch")
    check_samples(samples)
    segmenter = as_segmenter(model_or_segmenter)
    check_trimap_classes(segmenter.config.labels)
    accumulators = {resolution: SegmentationMetrics(num_classes=segmenter.config.num_classes) for resolution in RESOLUTIONS}
    alpha_metrics = {kind: AlphaMetrics() for kind in alphas}
    # Each figure from the prediction its output is made from: labels as the network gives
    # them, each alpha as a cutout with it (by default only matting averages in the mirror).
    flips = {kind: segmenter.flips_for(kind) for kind in alphas} | {"labels": segmenter.flips_for(None)}
    skipped: list[str] = []
    kept: list[Example] = []
    for start in range(0, len(samples), batch_size):
        photos, label_maps = [], []
        for sample in samples[start : start + batch_size]:
            try:
                photo, labels = load_sample(sample)
            except PetsegError as error:
                skipped.append(str(error))
                continue
            photos.append(photo)
            label_maps.append(labels)
        views = segmenter.predict_views(photos, [flips["labels"], *(flips[kind] for kind in alphas)])
        for index, (photo, labels) in enumerate(zip(photos, label_maps)):
            prediction = views[flips["labels"]][index]
            accumulators["model"].update(prediction.letterbox.apply_mask(labels), prediction.probabilities.argmax(0))
            predicted = prediction.labels()  # the cutout's own upsampling (compose.upsample_labels)
            accumulators["original"].update(labels, predicted)
            cutouts = {kind: cutout_alpha(photo, views[flips[kind]][index], kind, colours=False).alpha
                       for kind in alphas}
            for kind, alpha in cutouts.items():
                alpha_metrics[kind].update(labels, alpha)
            if len(kept) < examples:
                shown = next(iter(cutouts.values())) if cutouts else prediction.alpha()
                kept.append(Example(photo, labels, predicted, shown))
        on_batch(len(samples[start : start + batch_size]))
    if not accumulators["original"].per_image_fg_iou:
        first = f"; the first: {skipped[0]}" if skipped else ""
        raise PetsegError(f"no readable samples to evaluate ({len(skipped)} skipped{first})")
    return {
        "model": segmenter.config.architecture,
        "image_size": segmenter.config.image_size,
        "num_images": len(accumulators["original"].per_image_fg_iou),
        "skipped": skipped,
        "resolutions": {
            resolution: {**metrics.compute(), "confusion_matrix": metrics.matrix.tolist()}
            for resolution, metrics in accumulators.items()
        },
        "alpha": {kind: metrics.compute() for kind, metrics in alpha_metrics.items()},
        "flip_tta": flips,
        "examples": kept,
    }


# The stems of the photos the bundled model trained on, one a line, beside the model.
BUNDLED_TRAINING_LIST = "petseg-pets.training.txt"


def fit_check_warning(model: str | Path | None, names: Sequence[str]) -> str | None:
    """A warning when the bundled model (model None, or its file) is scored on photos it trained on."""
    from petseg.models.files import BUNDLED_MODEL_NAME, WEIGHTS_FOLDER

    if model is not None and Path(model).resolve() != (WEIGHTS_FOLDER / BUNDLED_MODEL_NAME).resolve():
        return None
    try:
        lines = (WEIGHTS_FOLDER / BUNDLED_TRAINING_LIST).read_text(encoding="utf-8").splitlines()
    except OSError:
        return None  # an install without the list cannot tell
    trained = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    seen = sum(name in trained for name in names)
    if not seen:
        return None
    return (f"{seen} of {len(names)} photos are among the bundled model's training photos: "
            "the figures are a fit check, not a score")


def metrics_json(result: dict) -> str:
    """The evaluation as JSON (the example images left out)."""
    return json.dumps({key: value for key, value in result.items() if key != "examples"}, indent=2)


def format_report(result: dict, class_names: Sequence[str] = CLASS_NAMES) -> str:
    """Summary per resolution, per-class IoU/Dice and the confusion matrix, as plain text."""
    lines = [f"{result['model']} at {result['image_size']} px: {result['num_images']} images"
             + (f", {len(result['skipped'])} skipped" if result["skipped"] else "")
             + (", labels averaged with the mirrored photo's" if result.get("flip_tta", {}).get("labels") else "")]
    lines.append(f"{'resolution':<11}" + "".join(f"{key:>18}" for key in SUMMARY_KEYS))
    for resolution, metrics in result["resolutions"].items():
        lines.append(f"{resolution:<11}" + "".join(f"{metrics[key]:>18.4f}" for key in SUMMARY_KEYS))
    if result.get("alpha"):
        lines.append("")
        lines.append("cutout alpha (original resolution, trimap's known pixels)")
        lines.append(f"{'alpha':<13}" + "".join(f"{key:>18}" for key in ALPHA_KEYS))
        for kind, metrics in result["alpha"].items():
            shown = f"{kind}+flip" if result.get("flip_tta", {}).get(kind) else kind  # averaged with the mirror
            lines.append(f"{shown:<13}" + "".join(f"{metrics[key]:>18.4f}" for key in ALPHA_KEYS))
    for resolution, metrics in result["resolutions"].items():
        lines.append("")
        lines.append(f"per class ({resolution} resolution)   IoU      Dice")
        for name in class_names:
            lines.append(f"  {name:<28}{metrics[f'iou_{name}']:.4f}   {metrics[f'dice_{name}']:.4f}")
        lines.append(f"confusion matrix ({resolution}; rows true, columns predicted, pixels)")
        width = max(12, *(len(str(count)) + 2 for row in metrics["confusion_matrix"] for count in row))
        lines.append(" " * 14 + "".join(f"{name:>{width}}" for name in class_names))
        for name, row in zip(class_names, metrics["confusion_matrix"]):
            lines.append(f"  {name:<12}" + "".join(f"{count:>{width}}" for count in row))
    return "\n".join(lines)


# Class colours of the mask columns: pet, background, border; ignored pixels black.
CLASS_COLORS = np.array([[236, 112, 20], [40, 60, 110], [250, 230, 120]], np.uint8)


def colorize(labels: np.ndarray) -> np.ndarray:
    image = np.zeros((*labels.shape, 3), np.uint8)
    known = labels < len(CLASS_COLORS)
    image[known] = CLASS_COLORS[labels[known]]
    return image


def prediction_grid_png(examples: Sequence[Example]) -> bytes:
    """The notebook's figure as PNG bytes: input, true mask, predicted mask, background removed;
    one row per example. Drawn in memory, so that a caller can write it with its other outputs."""
    from matplotlib.figure import Figure

    if not examples:
        raise PetsegError("no examples to draw")
    titles = ("input", "true mask", "predicted mask", "background removed")
    figure = Figure(figsize=(12, 3 * len(examples)))
    axes = figure.subplots(len(examples), len(titles), squeeze=False)
    for row, example in zip(axes, examples):
        cutout = np.dstack([example.photo, example.alpha])
        for ax, title, image in zip(row, titles, (example.photo, colorize(example.labels), colorize(example.predicted), cutout)):
            ax.imshow(image)
            ax.set_title(title)
            ax.axis("off")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    return buffer.getvalue()


def refuse_folder_in_the_way(path: str | Path) -> None:
    """A folder (not a link to one) where a file is to be written: refused, naming it."""
    if os.path.isdir(path) and not os.path.islink(path):
        raise PetsegError(f"{path} is a folder, where the evaluation writes a file")


def write_prediction_grid(examples: Sequence[Example], path: str | Path) -> Path:
    """Write `prediction_grid_png(examples)` to `path` (replacing a file there)."""
    path = Path(path)
    refuse_folder_in_the_way(path)
    write_bytes_atomic(path, prediction_grid_png(examples))
    return path
