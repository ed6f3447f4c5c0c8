"""Command: `petseg evaluate MODEL --data DIR`: METRICS.md figures at model and original resolution."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

from petseg.cli.app import app, say
from petseg.limits import MAX_BATCH_SIZE
from petseg.cli.cutout import BACKEND_HELP, FLIP_HELP, MODEL_HELP, SOME_FILES_FAILED

METRICS_FILE = "metrics.json"
GRID_FILE = "predictions.png"


@app.command()
def evaluate(
    model: Optional[str] = typer.Argument(None, help=MODEL_HELP),
    data: Path = typer.Option(..., "--data", help="Dataset folder (Oxford layout, or images/ + masks/)."),
    split: str = typer.Option("test", "--split", help="trainval, test or all."),
    out: Optional[Path] = typer.Option(None, "--out", help=f"Folder for {METRICS_FILE} and {GRID_FILE}."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as one JSON object."),
    examples: int = typer.Option(6, "--examples", min=1, help=f"Rows of {GRID_FILE}."),
    backend: Optional[str] = typer.Option(None, "--backend", help=BACKEND_HELP),
    batch_size: int = typer.Option(8, "--batch-size", min=1, max=MAX_BATCH_SIZE, help="Photos per model call."),
    flip_tta: Optional[bool] = typer.Option(None, "--flip-tta/--no-flip-tta", help=FLIP_HELP),
    alpha: Optional[list[str]] = typer.Option(
        None, "--alpha", help="Cutout alpha to score (matting, hard, soft; repeat for several; default all three)."
    ),
    mask_values: Optional[str] = typer.Option(
        None, "--mask-values", help="For images/ + masks/ without classes.json: VALUE=CLASS pairs, e.g. 0=background,255=pet."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite existing files in --out."),
) -> None:
    """Pixel accuracy, per-class IoU and Dice, mIoU, foreground IoU and the confusion matrix.

    Samples that cannot be read are skipped, listed after the report, and make the exit status 1.
    """
    from tqdm import tqdm

    from petseg.data.layouts import load_samples, parse_label_map
    from petseg.errors import PetsegError, missing_train_extra, quoted
    from petseg.evaluate import evaluate as run_evaluation
    from petseg.evaluate import (MAX_EXAMPLES, fit_check_warning, format_report, metrics_json, prediction_grid_png,
                                 refuse_folder_in_the_way)
    from petseg.inference import Segmenter
    from petseg.atomic import prepare_output_folder, write_bytes_atomic
    from petseg.limits import check_whole_number

    check_whole_number(examples, "examples", 1, MAX_EXAMPLES)
    if out is not None and out.exists() and not out.is_dir():
        raise PetsegError(f"--out: {out} is a file, not a folder")
    outputs = [out / METRICS_FILE, out / GRID_FILE] if out else []
    for path in outputs:  # before any work: a failure must not leave metrics.json without its grid
        try:
            refuse_folder_in_the_way(path)
        except PetsegError as error:
            raise PetsegError(f"--out: {error}") from None
    # lexists: a dangling symbolic link is there too (exists() calls it absent), and writing would replace it
    existing = [path for path in outputs if os.path.lexists(path)]
    if existing and not force:
        raise PetsegError(f"--out: {', '.join(map(str, existing))} already exist{'s' if len(existing) == 1 else ''} "
                          "(use --force to overwrite)")
    if out is not None:
        try:
            prepare_output_folder(out)
        except PetsegError as error:
            raise PetsegError(f"--out: {error}") from None
    from petseg.inference.compose import ALPHAS

    alphas = tuple(dict.fromkeys(alpha)) if alpha else ALPHAS
    for kind in alphas:
        if kind not in ALPHAS:
            raise PetsegError(f"--alpha: {quoted(kind)} is not one of {', '.join(ALPHAS)}")
    samples = load_samples(data, split, label_map=parse_label_map(mask_values) if mask_values else None)
    if not samples:
        raise PetsegError(f"--data: {data} has no samples in split {quoted(split)}")
    segmenter = Segmenter.load(model, backend, flip_tta=flip_tta)
    with tqdm(total=len(samples), unit="photo", disable=not sys.stderr.isatty(), file=sys.stderr) as bar:
        result = run_evaluation(segmenter, samples, batch_size=batch_size, examples=examples if out else 0,
                                alphas=alphas, on_batch=bar.update)
    result["data"], result["split"] = str(data), split
    warning = fit_check_warning(model, [sample.name for sample in samples])
    if warning:
        say("warning", warning)
    written: list[Path] = []
    if out:
        contents = {out / METRICS_FILE: metrics_json(result).encode()}
        try:  # drawn before anything is written
            contents[out / GRID_FILE] = prediction_grid_png(result["examples"])
        except ModuleNotFoundError as error:  # the light install has no matplotlib: metrics only
            problem = missing_train_extra(error, f"drawing {GRID_FILE}")
            if problem is None:
                raise
            typer.echo(f"skipped {out / GRID_FILE}: {problem}", err=True)
        for path, content in contents.items():
            try:
                write_bytes_atomic(path, content)
            except OSError as error:
                for done in written:  # nothing new is left of a failed run
                    if done not in existing:
                        done.unlink(missing_ok=True)
                raise PetsegError(f"--out: cannot write {path} ({error.strerror or error})") from None
            written.append(path)
    typer.echo(metrics_json(result) if as_json else format_report(result))
    if written and not as_json:
        typer.echo(f"\nwrote {' and '.join(map(str, written))}")
    for reason in result["skipped"]:
        say("skipped", reason)
    if result["skipped"]:  # the figures stand for the other samples; a script must still see the failure
        say("error", f"{len(result['skipped'])} of {len(samples)} sample(s) skipped; the figures leave them out")
        raise typer.Exit(SOME_FILES_FAILED)
