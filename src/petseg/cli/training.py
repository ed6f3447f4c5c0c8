"""`petseg train` and `petseg compare`.

Both are thin: they turn flags into a TrainConfig / a list of run directories and
call petseg.train.fit / petseg.compare.compare_runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from petseg.cli.app import app, fail, say
from petseg.errors import PetsegError, quoted


def _parse_scale(text: str, flag: str = "--scale"):
    """'0.75,1.25' -> (0.75, 1.25); 'none' -> no such augmentation."""
    if text.strip().lower() == "none":
        return None
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise PetsegError(f"{flag} must look like MIN,MAX (e.g. 0.75,1.25) or none, got {quoted(text)}") from None
    return (low, high)


def _parse_names(text: str) -> tuple[str, ...]:
    """'Abyssinian, american_bulldog' -> ('Abyssinian', 'american_bulldog')."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _parse_widths(text: str) -> list[int]:
    """'256,128,64' -> [256, 128, 64]."""
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise PetsegError(f"--decoder-channels must be comma-separated integers, e.g. 256,128,64,32,16, got {quoted(text)}") from None


# A TrainConfig field that no single flag sets -> the flags that set it.
FLAGS_FOR_SETTING = {"model_options": "--decoder/--decoder-channels/--width"}


def _flag(setting: str) -> str:
    return FLAGS_FOR_SETTING.get(setting, "--" + setting.replace("_", "-"))


@app.command()
def train(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Architecture, e.g. unet_mobilenetv2 (see `petseg models`)."),
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="Dataset folder (Oxford layout or images/ + masks/)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run directory for checkpoints, history and curves (default with --config: the file's)."),
    recipe: Optional[str] = typer.Option(None, "--recipe", help="seed (the reference notebook), default (ours) or generalize (default + augmentation for unseen pets); default: default."),
    epochs: Optional[int] = typer.Option(None, help="Maximum number of epochs."),
    batch_size: Optional[int] = typer.Option(None, help="Global batch size (split over DDP processes)."),
    image_size: Optional[int] = typer.Option(None, help="Square input size the images are letterboxed to."),
    lr: Optional[float] = typer.Option(None, help="Peak learning rate (decoder and head)."),
    encoder_lr_factor: Optional[float] = typer.Option(None, help="Encoder lr = lr x this factor."),
    weight_decay: Optional[float] = typer.Option(None, help="Weight decay (not applied to norms and biases)."),
    optimizer: Optional[str] = typer.Option(None, help="adam or adamw."),
    schedule: Optional[str] = typer.Option(None, help="cosine (warm-up then cosine) or exponential (staircase)."),
    warmup_epochs: Optional[float] = typer.Option(None, help="Warm-up length for the cosine schedule."),
    loss: Optional[str] = typer.Option(None, help="ce (cross-entropy) or dice_ce (Dice + cross-entropy)."),
    patience: Optional[int] = typer.Option(None, help="Early-stopping patience in epochs."),
    ema_decay: Optional[float] = typer.Option(None, help="Keep an exponential moving average of the weights (decay per step, e.g. 0.999, warmed up): it is validated, saved and bundled."),
    pretrained: Optional[bool] = typer.Option(None, "--pretrained/--no-pretrained", help="Start the encoder from ImageNet weights (needs them cached)."),
    weights: Optional[Path] = typer.Option(None, help="Encoder weights file to start from."),
    freeze_encoder: Optional[bool] = typer.Option(None, "--freeze-encoder/--no-freeze-encoder", help="Train the decoder only."),
    decoder: Optional[str] = typer.Option(None, help="Decoder kind: unet or pix2pix."),
    decoder_channels: Optional[str] = typer.Option(None, help="Decoder block widths, deepest first, e.g. 256,128,64,32,16."),
    width: Optional[int] = typer.Option(None, help="Base width of unet_diy."),
    hflip: Optional[bool] = typer.Option(None, "--hflip/--no-hflip", help="Random horizontal flips."),
    scale: Optional[str] = typer.Option(None, help="Random zoom range MIN,MAX, or none."),
    color_jitter: Optional[float] = typer.Option(None, help="Brightness/contrast/saturation jitter in [0, 1)."),
    crop_scale: Optional[str] = typer.Option(None, help="Random resized crop: MIN,MAX share of the area kept (e.g. 0.5,1), or none."),
    rotation: Optional[float] = typer.Option(None, help="Random rotation of up to this many degrees either way."),
    hue: Optional[float] = typer.Option(None, help="Random hue shift of up to this share of the colour wheel (<= 0.5)."),
    gamma: Optional[float] = typer.Option(None, help="Random gamma in [1 - G, 1 + G]."),
    grayscale: Optional[float] = typer.Option(None, help="Probability of a grayscale image."),
    blur: Optional[float] = typer.Option(None, help="Probability of a Gaussian blur."),
    noise: Optional[float] = typer.Option(None, help="Std of Gaussian pixel noise (share of 0..255), added half the time."),
    copy_paste: Optional[float] = typer.Option(None, help="Probability of pasting the pet onto another photo's pet-free background."),
    pet_recolor: Optional[float] = typer.Option(None, help="Probability of turning the pet's fur white, black or grey (its background kept)."),
    breeds: Optional[str] = typer.Option(None, help="Train and validate on these breeds only, e.g. Abyssinian,american_bulldog (any case)."),
    exclude_breeds: Optional[str] = typer.Option(None, help="Leave these breeds out, e.g. Bengal."),
    keep_suspect: Optional[bool] = typer.Option(None, "--keep-suspect/--skip-suspect", help="Train on masks without pet pixels, which `petseg data check` flags (default: leave them out; broken files are always left out)."),
    val_fraction: Optional[float] = typer.Option(None, help="Validate on this held-out fraction of the training split instead of the test list."),
    train_split: Optional[str] = typer.Option(None, help="trainval, or all (every labelled image: for a final model once settings are chosen)."),
    layout: Optional[str] = typer.Option(None, help="Dataset layout: auto, oxford or folder."),
    mask_values: Optional[str] = typer.Option(None, help="Folder layout mask mapping, e.g. 0=background,255=pet."),
    limit: Optional[int] = typer.Option(None, help="Train on the first N images only (smoke runs)."),
    cache_dir: Optional[Path] = typer.Option(None, help="Decoded-image cache folder."),
    seed: Optional[int] = typer.Option(None, help="Random seed (data order, augmentation, initialisation)."),
    workers: Optional[int] = typer.Option(None, help="DataLoader worker processes."),
    threads: Optional[int] = typer.Option(None, help="CPU threads per process (1 is often fastest on a busy CPU)."),
    device: Optional[str] = typer.Option(None, help="auto, cpu or cuda."),
    amp: Optional[str] = typer.Option(None, help="Mixed precision on CUDA: auto, bf16, fp16 or off."),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="Show a progress bar per epoch (default: on)."),
    config_file: Optional[Path] = typer.Option(None, "--config", help="Start from a saved config (a recipe file or a run folder's config file); flags override it."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    force: bool = typer.Option(False, "--force", help="Start over in a run directory that already holds a run."),
) -> None:
    """Train a U-Net; writes its run folder: the config, the checkpoint, the best model, history and curves."""
    flags = {name: value for name, value in locals().items() if value is not None}  # first: only the flags
    from petseg.run_dir import RESUMABLE_SETTINGS, ResumeConflict
    from petseg.train import build_config, fit

    starting_point = {name: flags.pop(name, None) for name in ("out", "model", "data", "recipe", "config_file")}
    resume, force = flags.pop("resume"), flags.pop("force")
    config = build_config(**starting_point, resume=resume, overrides=_settings(flags))
    try:
        result = fit(config, resume=resume, force=force)
    except ResumeConflict as error:
        fail(f"{_flag(error.setting)} cannot change on resume (the run has {quoted(error.saved)}, not {quoted(error.given)}); "
             f"only {', '.join(_flag(name) for name in RESUMABLE_SETTINGS)} may")
    if result.interrupted:
        raise typer.Exit(130)


def _settings(flags: dict) -> dict:
    """The flags that were given -> TrainConfig settings (most flags are named after theirs)."""
    model_options = {name: flags.pop(name) for name in ("decoder", "width", "decoder_channels") if name in flags}
    if "decoder_channels" in model_options:
        model_options["decoder_channels"] = _parse_widths(model_options["decoder_channels"])
    if model_options:
        flags["model_options"] = model_options
    for name in ("scale", "crop_scale"):
        if name in flags:
            flags[name] = _parse_scale(flags[name], _flag(name))
    for name in ("breeds", "exclude_breeds"):
        if name in flags:
            flags[name] = _parse_names(flags[name])
    return {name: str(value) if isinstance(value, Path) else value for name, value in flags.items()}


@app.command()
def compare(
    run_dirs: list[Path] = typer.Argument(..., help="Run directories written by `petseg train`."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write comparison.md, .csv and .png here."),
    image_size: int = typer.Option(224, help="Input size for GFLOPs and CPU latency."),
    repeats: int = typer.Option(10, help="Timed forward passes per model (the median is reported)."),
    threads: int = typer.Option(1, min=1, help="CPU threads for the latency (1 gives steady figures on a busy machine)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an earlier comparison in --out."),
) -> None:
    """Compare runs: size, speed, training time and best validation metrics, side by side.

    A run that cannot be read is reported in one line at the end and the others are still compared;
    the exit status is then 1.
    """
    from rich.console import Console
    from rich.table import Table

    from petseg.cli.cutout import SOME_FILES_FAILED
    from petseg.compare import COLUMNS, NothingToCompare, compare_runs, table_rows

    if repeats < 1:
        fail(f"--repeats must be at least 1, got {repeats}")
    try:
        summaries = compare_runs(run_dirs, out, force=force, image_size=image_size, repeats=repeats, threads=threads)
    except NothingToCompare as error:  # one line per run, as when some could be compared
        for _, message in error.failures:
            say("error", message)
        raise typer.Exit(error.exit_code) from None
    table = Table(title=f"runs compared (latency: 1 image at {image_size}x{image_size}, {threads} CPU thread(s))")
    for title, _, _ in COLUMNS:
        table.add_column(title, justify="left" if title in ("run", "model", "init") else "right", no_wrap=True)
    for row in table_rows(summaries):
        table.add_row(*row)
    console = Console()
    if not console.is_terminal:  # piped to a file: do not squeeze the table into 80 columns
        console = Console(width=200)
    console.print(table)
    if out is not None:
        typer.echo(f"wrote {out / 'comparison.md'}, {out / 'comparison.csv'} and {out / 'comparison.png'}")
    for _, message in summaries.failures:
        say("error", message)
    if summaries.failures:
        typer.echo(f"compared {len(summaries)} run(s), {len(summaries.failures)} failed", err=True)
        raise typer.Exit(SOME_FILES_FAILED)
