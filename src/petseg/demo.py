"""`petseg demo`: the whole product in about a minute, offline, on generated pets.

It goes through the same library calls a user would: generate a dataset, train,
evaluate, cut out. Nothing is downloaded, so it runs on a fresh machine. It ends with
the bundled model on a few real photos (`examples/`): a before/after sheet.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from petseg.errors import PetsegError
from petseg.run_dir import BEST_MODEL_FILE, CURVES_FILE

DEMO_MODEL = "unet_diy"
DEMO_WIDTH = 16
DEMO_IMAGE_SIZE = 96
DEMO_PHOTOS = 96
DEMO_EPOCHS = 12
DEMO_CUTOUTS = 4
# Real photos for the before/after sheet (Oxford-IIIT Pet, see examples/ATTRIBUTION.md).
EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
SHEET_FILE = "cutout-sheet.png"
SHEET_ROW_HEIGHT = 220
SHEET_BACKGROUND = "#2f6f9f"
CHECKER_SQUARE = 12


@dataclass
class DemoResult:
    out_dir: Path
    data_dir: Path
    run_dir: Path
    evaluation_dir: Path
    cutout_paths: list[Path]
    metrics: dict[str, float]
    sheet_path: Path | None = None


def _prepare(out_dir: Path, force: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise PetsegError(f"{out_dir} is a file, not a folder", option="out")
    if out_dir.exists() and any(out_dir.iterdir()):
        if not force:
            raise PetsegError(f"{out_dir}: already exists and is not empty", advice="{force} replaces the demo's files")
    out_dir.mkdir(parents=True, exist_ok=True)


def checkerboard(height: int, width: int, square: int = CHECKER_SQUARE) -> Image.Image:
    """The usual grey checks that show transparency."""
    ys, xs = np.mgrid[:height, :width]
    light = ((ys // square + xs // square) % 2).astype(bool)
    return Image.fromarray(np.where(light, 204, 153).astype(np.uint8), mode="L").convert("RGB")


def cutout_sheet(photos: Sequence[Path], path: Path, *, segmenter=None, row_height: int = SHEET_ROW_HEIGHT) -> Path:
    """One row per photo: the photo | its cutout on a checkerboard | its cutout on a colour.

    Cutouts are made with the library's defaults (matted alpha, decontaminated edges),
    at each photo's own size, then scaled to `row_height` for the sheet.
    """
    from petseg.inference import remove_background
    from petseg.atomic import write_atomic

    rows = []
    for photo_path in photos:
        photo = Image.open(photo_path).convert("RGB")
        cutout = remove_background(photo, segmenter=segmenter)
        width = max(1, round(photo.width * row_height / photo.height))
        photo, cutout = photo.resize((width, row_height), Image.LANCZOS), cutout.resize((width, row_height), Image.LANCZOS)
        on_checks = checkerboard(row_height, width)
        on_checks.paste(cutout, mask=cutout.getchannel("A"))
        on_colour = Image.new("RGB", (width, row_height), SHEET_BACKGROUND)
        on_colour.paste(cutout, mask=cutout.getchannel("A"))
        rows.append((photo, on_checks, on_colour))
    if not rows:
        raise PetsegError("no photos for the cutout sheet")
    gap = 6
    width = max(sum(cell.width for cell in row) + gap * (len(row) + 1) for row in rows)
    sheet = Image.new("RGB", (width, len(rows) * (row_height + gap) + gap), "white")
    for index, row in enumerate(rows):
        left, top = gap, gap + index * (row_height + gap)
        for cell in row:
            sheet.paste(cell, (left, top))
            left += cell.width + gap
    write_atomic(path, lambda file: sheet.save(file, format="PNG", optimize=True))
    return path


def example_photos(folder: Path = EXAMPLES_DIR) -> list[Path]:
    return sorted(folder.glob("*.jpg")) if folder.is_dir() else []


def run_demo(out_dir: str | Path, *, epochs: int = DEMO_EPOCHS, force: bool = False,
             progress: bool = True, log: Callable[[str], None] = print,
             examples: Sequence[Path] | None = None) -> DemoResult:
    """Toy data -> training run -> evaluation with prediction grid -> cutouts, under out_dir,
    then the bundled model on real photos (`examples`, default examples/) -> a before/after sheet."""
    import torch

    from petseg.data.layouts import load_samples
    from petseg.data.toy import make_toy_dataset
    from petseg.evaluate import evaluate, format_report, metrics_json, write_prediction_grid
    from petseg.atomic import write_text_atomic
    from petseg.inference import CutoutOptions, Segmenter
    from petseg.inference.files import plan_cutouts
    from petseg.inference.pipeline import run_cutouts
    from petseg.train import fit, resolve_config

    out_dir = Path(out_dir)
    _prepare(out_dir, force)
    # At most four threads: a toy model gains nothing from more, and they contend.
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))

    log(f"1/5 generating {DEMO_PHOTOS} toy pets in {out_dir / 'data'}")
    data_dir = make_toy_dataset(out_dir / "data", n=DEMO_PHOTOS, size=160, seed=0, force=True)

    log(f"2/5 training {DEMO_MODEL} (width {DEMO_WIDTH}, {DEMO_IMAGE_SIZE} px) for up to {epochs} epochs")
    config = resolve_config(
        DEMO_MODEL, data=str(data_dir), out=str(out_dir / "run"), recipe="default",
        epochs=epochs, image_size=DEMO_IMAGE_SIZE, batch_size=8, model_options={"width": DEMO_WIDTH},
        cache_dir=str(out_dir / "cache"), progress=progress,
    )
    run = fit(config, force=True)

    log("3/5 evaluating the best checkpoint on the toy test split")
    segmenter = Segmenter.load(run.best_model_path)
    test_samples = load_samples(data_dir, "test")
    evaluation = evaluate(segmenter, test_samples, examples=6)
    evaluation_dir = out_dir / "evaluation"
    write_text_atomic(evaluation_dir / "metrics.json", metrics_json(evaluation))
    write_prediction_grid(evaluation["examples"], evaluation_dir / "predictions.png")
    log(format_report(evaluation))

    log(f"4/5 cutting out {DEMO_CUTOUTS} test photos")
    cutout_dir = out_dir / "cutouts"
    options = CutoutOptions()  # rgba PNGs, as `petseg cutout` writes by default
    plan = plan_cutouts([str(sample.image_path) for sample in test_samples[:DEMO_CUTOUTS]], cutout_dir,
                        f".{options.image_format}", force=True)
    failures = plan.problems + run_cutouts(segmenter, plan.jobs, options).failed
    if failures:
        raise PetsegError("demo cutouts failed: " + "; ".join(failures))
    cutout_paths = [job.output for job in plan.jobs]

    photos = example_photos() if examples is None else list(examples)
    sheet_path = None
    if photos:
        log(f"5/5 cutting out {len(photos)} real photos with the bundled model: {out_dir / SHEET_FILE}")
        sheet_path = cutout_sheet(photos, out_dir / SHEET_FILE)
    else:
        log(f"5/5 skipped: no example photos in {EXAMPLES_DIR} (a source checkout has them)")

    return DemoResult(out_dir, data_dir, run.run_dir, evaluation_dir, cutout_paths,
                      evaluation["resolutions"]["original"], sheet_path)


def describe(result: DemoResult) -> str:
    metrics = result.metrics
    lines = [
        "",
        "Demo finished. Look at:",
        f"  training curves     {result.run_dir / CURVES_FILE}",
        f"  model file          {result.run_dir / BEST_MODEL_FILE}",
        f"  prediction grid     {result.evaluation_dir / 'predictions.png'}",
        f"  metrics             {result.evaluation_dir / 'metrics.json'}",
        f"  cutouts             {result.cutout_paths[0].parent}/ ({len(result.cutout_paths)} PNGs)",
        *([f"  real photos         {result.sheet_path} (bundled model: photo | cutout | on a colour)"]
          if result.sheet_path else []),
        "Test split, original resolution: "
        + ", ".join(f"{key} {metrics[key]:.3f}" for key in ("pixel_accuracy", "miou", "fg_iou")),
    ]
    return "\n".join(lines)

