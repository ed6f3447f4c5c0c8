"""`petseg demo`: the whole product in about a minute, offline, on generated pets.

It goes through the same library calls a user would: generate a dataset, train,
evaluate, cut out. Nothing is downloaded, so it runs on a fresh machine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from petseg.errors import PetsegError

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
    from petseg.inference import Segmenter, remove_background
    from petseg.atomic import write_atomic
    from petseg.train import fit, resolve_config

    out_dir = Path(out_dir)
    _prepare(out_dir, force)
    # Two cores: more threads than cores only adds contention.
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
    evaluation_dir.mkdir(exist_ok=True)
    write_atomic(evaluation_dir / "metrics.json", lambda file: file.write(metrics_json(evaluation).encode()))
    write_prediction_grid(evaluation["examples"], evaluation_dir / "predictions.png")
    log(format_report(evaluation))

    log(f"4/4 cutting out {DEMO_CUTOUTS} test photos")
    cutout_dir = out_dir / "cutouts"
    cutout_dir.mkdir(exist_ok=True)
    cutout_paths = []
    for sample in test_samples[:DEMO_CUTOUTS]:
        cutout = remove_background(sample.image_path, segmenter=segmenter)
        path = cutout_dir / f"{sample.name}.png"
        write_atomic(path, lambda file: cutout.save(file, "PNG"))
        cutout_paths.append(path)

    return DemoResult(out_dir, data_dir, run.run_dir, evaluation_dir, cutout_paths,
                      evaluation["resolutions"]["original"])


def describe(result: DemoResult) -> str:
    metrics = result.metrics
    lines = [
        "",
        "Demo finished. Look at:",
        f"  training curves     {result.run_dir / 'curves.png'}",
        f"  model file          {result.run_dir / 'best.safetensors'}",
        f"  prediction grid     {result.evaluation_dir / 'predictions.png'}",
        f"  metrics             {result.evaluation_dir / 'metrics.json'}",
        f"  cutouts             {result.cutout_paths[0].parent}/ ({len(result.cutout_paths)} PNGs)",
        "Test split, original resolution: "
        + ", ".join(f"{key} {metrics[key]:.3f}" for key in ("pixel_accuracy", "miou", "fg_iou")),
    ]
    return "\n".join(lines)


def summary_json(result: DemoResult) -> str:
    return json.dumps({"out_dir": str(result.out_dir), "metrics": result.metrics,
                       "cutouts": [str(path) for path in result.cutout_paths]})
