"""Commands: `petseg cutout` (background removal for files, folders, globs, stdin) and `petseg export`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from petseg.cli.app import app, fail

MODEL_HELP = "A run folder (its best model), a .safetensors or an .onnx file; default: the bundled model."
# Exit status when some files failed and the others were written.
SOME_FILES_FAILED = 1


@app.command()
def cutout(
    inputs: list[str] = typer.Argument(..., help="Photos, folders, glob patterns, or - to read stdin and write stdout."),
    out: Path = typer.Option(Path("cutouts"), "--out", "-o", help="Folder for the outputs (photo.jpg -> OUT/photo.png)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    mode: str = typer.Option(
        "rgba", "--mode", help="rgba: PNG with soft alpha; mask: the alpha as gray PNG; "
        "labels: trimap PNG (1 pet, 2 background, 3 border); color: JPEG on --bg or --bg-image."
    ),
    bg: Optional[str] = typer.Option(None, "--bg", help="Background colour for --mode color: #rrggbb or a name (default white)."),
    bg_image: Optional[Path] = typer.Option(None, "--bg-image", help="Background photo for --mode color (scaled to cover)."),
    refine: bool = typer.Option(False, "--refine", help="Snap the alpha to the photo's edges (guided filter)."),
    flip_tta: bool = typer.Option(False, "--flip-tta", help="Average with the mirrored photo's prediction (2x model time)."),
    backend: Optional[str] = typer.Option(None, "--backend", help="torch or onnx (default: onnx for .onnx models, else torch)."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into subfolders of folder inputs."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing outputs (default: skip them)."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Photos per model call."),
    max_pixels: Optional[int] = typer.Option(
        None, "--max-pixels", min=1, help="Refuse larger images, against decompression bombs (default 100 megapixels)."
    ),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="ONNX Runtime threads (default: all cores)."),
) -> None:
    """Remove the background of photos, at their original size and orientation.

    Bad files are reported one line each and the others are still written; the exit status is 1 when any file failed.
    """
    from PIL import Image

    from petseg.data.decode import DEFAULT_MAX_PIXELS, load_rgb
    from petseg.errors import PetsegError
    from petseg.inference import CutoutOptions, Segmenter
    from petseg.inference.files import STDIN, plan_cutouts

    max_pixels = max_pixels or DEFAULT_MAX_PIXELS
    background = Image.fromarray(load_rgb(bg_image, max_pixels=max_pixels)) if bg_image else None
    try:
        options = CutoutOptions(mode=mode, bg=bg, background=background, refine=refine)
    except PetsegError as error:  # the library speaks of modes and backgrounds; name the flags
        raise PetsegError(f"--mode/--bg/--bg-image: {error}") from None
    if STDIN in inputs:
        if len(inputs) > 1:
            fail("INPUT: - (stdin) cannot be combined with other inputs")
        segmenter = Segmenter.load(model, backend, threads=threads, flip_tta=flip_tta)
        return _cutout_stdin(segmenter, options, max_pixels)

    plan = plan_cutouts(inputs, out, f".{options.image_format}", recursive=recursive, force=force)
    for problem in plan.problems:
        typer.echo(f"error: {problem}", err=True)
    if plan.skipped:
        typer.echo(f"skipped {len(plan.skipped)} existing output(s) in {out} (use --force to overwrite)", err=True)
    failures = list(plan.problems)
    written = 0
    if plan.jobs:
        from tqdm import tqdm

        from petseg.inference.pipeline import run_cutouts

        segmenter = Segmenter.load(model, backend, threads=threads, flip_tta=flip_tta)
        with tqdm(total=len(plan.jobs), unit="photo", disable=not sys.stderr.isatty(), file=sys.stderr) as bar:
            summary = run_cutouts(
                segmenter, plan.jobs, options, batch_size=batch_size, max_pixels=max_pixels,
                on_error=lambda message: bar.write(f"error: {message}", file=sys.stderr),
                on_done=lambda job: bar.update(),
            )
        failures += summary.failed
        written = len(summary.written)
    typer.echo(f"wrote {written} file(s) to {out}" + (f", {len(failures)} failed" if failures else ""), err=True)
    if failures:
        raise typer.Exit(SOME_FILES_FAILED)


def _cutout_stdin(segmenter, options, max_pixels: int) -> None:
    """One photo from stdin, its cutout to stdout (PNG, or JPEG for --mode color)."""
    from petseg.inference import remove_background
    from petseg.inference.render import save_image

    if sys.stdout.isatty():
        fail("refusing to write image data to a terminal; redirect stdout (petseg cutout - > out.png)")
    result = remove_background(
        sys.stdin.buffer, segmenter=segmenter, mode=options.mode, bg=options.bg,
        bg_image=options.background, refine=options.refine, max_pixels=max_pixels,
    )
    save_image(result, sys.stdout.buffer, options.image_format)
    sys.stdout.buffer.flush()


@app.command()
def export(
    model: str = typer.Argument(..., help="A run folder (its best model) or a .safetensors file."),
    onnx: Path = typer.Option(..., "--onnx", help="The .onnx file to write."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Export a model to ONNX (dynamic batch and size), checked against PyTorch before it is written."""
    from petseg.inference.export import PARITY_TOLERANCE, export_and_verify
    from petseg.models.files import resolve_model_path
    from petseg.models import load_model

    if onnx.suffix.lower() != ".onnx":
        fail(f"--onnx: {onnx} must end in .onnx")
    path = resolve_model_path(model)
    if path.suffix.lower() == ".onnx":
        fail(f"{path}: already an ONNX model")
    difference = export_and_verify(load_model(path), onnx, force=force)
    typer.echo(f"wrote {onnx} (max probability difference to PyTorch {difference:.1e} < {PARITY_TOLERANCE:.0e})")
