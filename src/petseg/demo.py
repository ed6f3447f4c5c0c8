"""`petseg demo`: the whole product in about a minute, offline, on generated pets.

It goes through the same library calls a user would: generate a dataset, train,
evaluate, cut out. Nothing is downloaded, so it runs on a fresh machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from petseg.errors import PetsegError
from petseg.run_dir import BEST_MODEL_FILE, CURVES_FILE

DEMO_MODEL = "unet_diy"
DEMO_WIDTH = 16
DEMO_IMAGE_SIZE = 96
DEMO_PHOTOS = 96
DEMO_EPOCHS = 12
DEMO_CUTOUTS = 4


@dataclass
class DemoResult:
    out_dir: Path
    data_dir: Path
    run_dir: Path
    evaluation_dir: Path
    cutout_paths: list[Path]
    metrics: dict[str, float]


def _prepare(out_dir: Path, force: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise PetsegError(f"--out: {out_dir} is a file, not a folder")
    if out_dir.exists() and any(out_dir.iterdir()):
        if not force:
            raise PetsegError(f"{out_dir}: already exists and is not empty (use --force to replace the demo's files)")
    out_dir.mkdir(parents=True, exist_ok=True)


def run_demo(out_dir: str | Path, *, epochs: int = DEMO_EPOCHS, force: bool = False,
             progress: bool = True, log: Callable[[str], None] = print) -> DemoResult:
    """Toy data -> training run -> evaluation with prediction grid -> cutouts, under out_dir."""
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

    log(f"1/4 generating {DEMO_PHOTOS} toy pets in {out_dir / 'data'}")
    data_dir = make_toy_dataset(out_dir / "data", n=DEMO_PHOTOS, size=160, seed=0, force=True)

    log(f"2/4 training {DEMO_MODEL} (width {DEMO_WIDTH}, {DEMO_IMAGE_SIZE} px) for up to {epochs} epochs")
    config = resolve_config(
        DEMO_MODEL, data=str(data_dir), out=str(out_dir / "run"), recipe="default",
        epochs=epochs, image_size=DEMO_IMAGE_SIZE, batch_size=8, model_options={"width": DEMO_WIDTH},
        cache_dir=str(out_dir / "cache"), progress=progress,
    )
    run = fit(config, force=True)

    log("3/4 evaluating the best checkpoint on the toy test split")
    segmenter = Segmenter.load(run.best_model_path)
    test_samples = load_samples(data_dir, "test")
    evaluation = evaluate(segmenter, test_samples, examples=6)
    evaluation_dir = out_dir / "evaluation"
    write_text_atomic(evaluation_dir / "metrics.json", metrics_json(evaluation))
    write_prediction_grid(evaluation["examples"], evaluation_dir / "predictions.png")
    log(format_report(evaluation))

    log(f"4/4 cutting out {DEMO_CUTOUTS} test photos")
    cutout_dir = out_dir / "cutouts"
    options = CutoutOptions()  # rgba PNGs, as `petseg cutout` writes by default
    plan = plan_cutouts([str(sample.image_path) for sample in test_samples[:DEMO_CUTOUTS]], cutout_dir,
                        f".{options.image_format}", force=True)
    failures = plan.problems + run_cutouts(segmenter, plan.jobs, options).failed
    if failures:
        raise PetsegError("demo cutouts failed: " + "; ".join(failures))
    cutout_paths = [job.output for job in plan.jobs]

    return DemoResult(out_dir, data_dir, run.run_dir, evaluation_dir, cutout_paths,
                      evaluation["resolutions"]["original"])


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
        "Test split, original resolution: "
        + ", ".join(f"{key} {metrics[key]:.3f}" for key in ("pixel_accuracy", "miou", "fg_iou")),
    ]
    return "\n".join(lines)

