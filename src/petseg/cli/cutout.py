"""Commands: `petseg cutout` (background removal for files, folders, globs, stdin) and `petseg export`."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

from petseg.cli.app import app, fail, problem_line, say
from petseg.limits import MAX_BATCH_SIZE

MODEL_HELP = "A run folder (its best model), a .safetensors or an .onnx file; default: the bundled model."
BACKEND_HELP = "torch or onnx (default: onnx for the bundled model and .onnx files, torch for .safetensors)."
FLIP_HELP = ("Average with the mirrored photo's prediction (2x model time); default: for --alpha matting only, "
             "the quality path (hard and soft are the fast ones).")
# Exit status when some files failed and the others were written.
SOME_FILES_FAILED = 1


@app.command()
def cutout(
    inputs: list[str] = typer.Argument(..., help="Photos, folders, glob patterns, or - to read stdin and write stdout."),
    out: Path = typer.Option(Path("cutouts"), "--out", "-o", help="Folder for the outputs (photo.jpg -> OUT/photo.png)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    mode: Optional[str] = typer.Option(
        None, "--mode", help="rgba (default): PNG with alpha; mask: the alpha as gray PNG; "
        "labels: trimap PNG (1 pet, 2 background, 3 border); color: JPEG on --bg or --bg-image (implied by either)."
    ),
    alpha: str = typer.Option(
        "matting", "--alpha", help="matting: solid pet, clear background, edges matted against the photo (edge colours "
        "freed of the old background); hard: the label mask (pet and border opaque); soft: P(pet) + P(border)/2."
    ),
    bg: Optional[str] = typer.Option(None, "--bg", help="Background colour (implies --mode color): #rrggbb or a name (default white)."),
    bg_image: Optional[Path] = typer.Option(None, "--bg-image", help="Background photo (implies --mode color; scaled to cover)."),
    flip_tta: Optional[bool] = typer.Option(None, "--flip-tta/--no-flip-tta", help=FLIP_HELP),
    backend: Optional[str] = typer.Option(None, "--backend", help=BACKEND_HELP),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into subfolders of folder inputs."),
    force: bool = typer.Option(
        False, "--force", help="Overwrite existing outputs (default: skip those made with the same options, refuse others)."
    ),
    batch_size: int = typer.Option(8, "--batch-size", min=1, max=MAX_BATCH_SIZE, help="Photos per model call."),
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
    from petseg.errors import PetsegError, command_line_flag
    from petseg.inference import CutoutOptions, Segmenter
    from petseg.inference.files import STDIN, check_output_folder, plan_cutouts, remove_stale_outputs
    from petseg.inference.provenance import file_identity, made_differently, model_identity, record_outputs
    from petseg.inference.render import default_mode
    from petseg.inference.segmenter import flips_for

    max_pixels = max_pixels or DEFAULT_MAX_PIXELS
    mode = default_mode(mode, bg is not None or bg_image is not None)

    def options_with(background) -> CutoutOptions:
        try:
            return CutoutOptions(mode=mode, bg=bg, background=background, alpha=alpha)
        except PetsegError as error:  # the library speaks of modes, alphas and backgrounds; name the flags
            raise PetsegError(f"--mode/--alpha/--bg/--bg-image: {error}") from None

    # The flags' combination first, with a stand-in: a wrong one is refused before a big background decodes.
    options = options_with(Image.new("RGB", (1, 1)) if bg_image else None)
    if bg_image:
        options = options_with(Image.fromarray(load_rgb(bg_image, max_pixels=max_pixels)))
    if STDIN in inputs:
        if len(inputs) > 1:
            fail("INPUT: - (stdin) cannot be combined with other inputs")
        segmenter = Segmenter.load(model, backend, threads=threads, flip_tta=flip_tta)
        return _cutout_stdin(segmenter, options, max_pixels)

    try:
        check_output_folder(out)  # before the model loads, not once per photo
    except PetsegError as error:
        fail(f"--out: {error}")
    plan = plan_cutouts(inputs, out, f".{options.image_format}", recursive=recursive, force=force)
    remove_stale_outputs(plan, out)  # what a killed run left
    # What shapes the pixels: a re-run with the same settings (and photos) has nothing to do.
    settings = {"model": model, "model_file": model_identity(model), "mode": mode, "alpha": alpha, "bg": bg,
                "bg_image": file_identity(bg_image) if bg_image else None,
                "flip_tta": flips_for(flip_tta, options.shaping_alpha)}
    different = made_differently(out, plan.skipped, settings)
    if different:
        fail(f"{out}: {len(different)} existing output(s) (e.g. {different[0].name}) were made with other options, "
             "from another photo or model file, or by something else; use --force to overwrite them, or another --out")
    for problem in plan.problems:
        say("error", problem)
    if plan.skipped:
        typer.echo(f"skipped {len(plan.skipped)} output(s) in {out} already made with these options "
                   "(use --force to redo them)", err=True)
    failures = list(plan.problems)
    written = 0
    if plan.jobs:
        from tqdm import tqdm

        from petseg.inference.pipeline import run_cutouts

        segmenter = Segmenter.load(model, backend, threads=threads, flip_tta=flip_tta)
        with tqdm(total=len(plan.jobs), unit="photo", disable=not sys.stderr.isatty(), file=sys.stderr) as bar:
            summary = run_cutouts(
                segmenter, plan.jobs, options, batch_size=batch_size, max_pixels=max_pixels,
                on_error=lambda message: bar.write(problem_line("error", message), file=sys.stderr),
                on_done=lambda job: bar.update(),
                describe=lambda error: error.worded(command_line_flag),
            )
        failures += summary.failed
        written = len(summary.written)
        written_outputs = set(summary.written)
        try:
            record_outputs(out, [job for job in plan.jobs if job.output in written_outputs], settings)
        except OSError as error:  # the cutouts are written; only a later re-run loses its check
            say("warning", f"{out}: cannot record the options used ({error.strerror or error})")
    typer.echo(f"wrote {written} file(s) to {out}" + (f", {len(failures)} failed" if failures else ""), err=True)
    if failures:
        raise typer.Exit(SOME_FILES_FAILED)


def _cutout_stdin(segmenter, options, max_pixels: int) -> None:
    """One photo from stdin, its cutout to stdout (PNG, or JPEG for --mode color)."""
    from petseg.inference import remove_background
    from petseg.inference.render import save_image

    if sys.stdout is None:  # started with stdout closed
        fail("stdout is closed; redirect it to a file (petseg cutout - > out.png)")
    if sys.stdout.isatty():
        fail("refusing to write image data to a terminal; redirect stdout (petseg cutout - > out.png)")
    if sys.stdin is None:  # started with stdin closed
        fail("stdin is closed; pipe a photo in (petseg cutout - < photo.jpg > out.png)")
    # A pipe cannot seek: decoding copies it to a temporary file first (decode.open_lazily), in bounded memory.
    result = remove_background(
        sys.stdin.buffer, segmenter=segmenter, mode=options.mode, bg=options.bg,
        bg_image=options.background, alpha=options.alpha, max_pixels=max_pixels,
    )
    try:
        save_image(result, sys.stdout.buffer, options.image_format)
        sys.stdout.buffer.flush()
    except OSError as error:  # a full disk (/dev/full), a closed pipe
        # Nothing more can reach stdout: point it at nothing, so the exit's own flush stays quiet.
        sys.stdout = open(os.devnull, "w")
        fail(f"stdout: cannot write the cutout ({error.strerror or error})", exit_code=1)


@app.command()
def export(
    model: str = typer.Argument(..., help="A run folder (its best model), a .safetensors file, or an .onnx file with --int8."),
    onnx: Path = typer.Option(..., "--onnx", help="The .onnx file to write."),
    int8: bool = typer.Option(False, "--int8", help="Quantize to int8 (smaller, faster on CPUs), calibrated on --calibration photos."),
    calibration: Optional[Path] = typer.Option(
        None, "--calibration", help="Folder of photos like those the model will cut out (a few dozen are used)."
    ),
    int8_scope: Optional[str] = typer.Option(
        None, "--int8-scope",
        help="With --int8. decoder (default): int8 decoder, float encoder (keeps quality); all: every layer (faster).",
    ),
    float16_weights: bool = typer.Option(
        False, "--float16-weights", help="Store weights in float16: half the file, still computed in float32."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Export a model to ONNX (dynamic batch and size), checked against PyTorch before it is written."""
    from petseg.inference.export import PARITY_TOLERANCE, export_and_verify
    from petseg.models.files import resolve_model_path

    if onnx.suffix.lower() != ".onnx":
        fail(f"--onnx: {onnx} must end in .onnx")
    if int8 != (calibration is not None):
        fail("--int8 and --calibration DIR go together: int8 ranges are calibrated on photos")
    if int8_scope is not None and not int8:
        fail("--int8-scope goes with --int8: without it nothing is quantized")
    path = resolve_model_path(model)
    if path.suffix.lower() == ".onnx":
        if not (int8 or float16_weights):
            fail(f"{path}: already an ONNX model (add --int8 --calibration DIR to quantize it, or --float16-weights)")
        source = path.read_bytes()
    else:
        from petseg.models import load_model

        source = load_model(path)
    report = export_and_verify(
        source, onnx, force=force, calibration=calibration, int8_scope=int8_scope or "decoder",
        float16_weights=float16_weights
    )
    notes = []
    if report.parity_difference is not None:
        notes.append(f"max probability difference to PyTorch {report.parity_difference:.1e} < {PARITY_TOLERANCE:.0e}")
    if report.int8_change is not None:
        notes.append(f"int8 moves probabilities by at most {report.int8_change:.3f} on the calibration photos")
    if report.float16_change is not None:
        notes.append(f"float16 weights move probabilities by at most {report.float16_change:.1e}")
    typer.echo(f"wrote {onnx} ({'; '.join(notes)})")
