"""`petseg models` and `petseg summary`: what the zoo holds and what a model looks like."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from petseg.cli.app import app


@app.command("models")
def models_command(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON list instead of a table."),
) -> None:
    """List the registered models and the bundled one: encoder, parameters, GFLOPs at 224x224, weights."""
    from petseg.models import list_models
    from petseg.models.figures import read_figures

    # Shipped figures (models/figures.json): counting them would build every model.
    figures = read_figures()
    rows = [{**_row(name, {}, figures["registry"].get(name)), "bundled": False} for name in list_models()]
    bundled = _bundled_config()
    if bundled is not None:  # its own figures: its decoder is not the registry default's
        saved = figures["bundled"] or {}
        same = (saved.get("architecture"), saved.get("options")) == (bundled.architecture, bundled.options)
        rows.append({**_row(bundled.architecture, bundled.options, saved.get("row") if same else None),
                     "bundled": True, "pretrained_weights": "trained on Oxford-IIIT Pet"})
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    _print_rows(rows)
    if bundled is not None:
        typer.echo(f"(bundled): the trained pet model inside the package, at {bundled.image_size} px, used by "
                   "cutout, serve and Segmenter.load() when no --model is given.")
    typer.echo("Any timm backbone with features_only works too, as unet_<timm name> (e.g. unet_resnet18).")


FIGURES = (("params", ","), ("trainable_params", ","), ("gflops_224", ".2f"))


def _row(name: str, options: dict, saved: dict | None) -> dict:
    """A model's row: the shipped figures, else counted now (needs PyTorch), else without figures."""
    if saved is not None:
        return saved
    try:
        from petseg.models.summary import describe
    except ModuleNotFoundError:  # the light install: the zoo without its figures
        from petseg.models import model_spec

        spec = model_spec(name)
        return {"name": name, "encoder": spec.encoder, **{key: None for key, _ in FIGURES},
                "pretrained_weights": spec.pretrained_weights}
    return describe(name, **options)


def _figures(row: dict) -> list[str]:
    return [format(row[key], spec) if row[key] is not None else "-" for key, spec in FIGURES]


# Below this many columns the table would cut or wrap names: one block per model instead.
TABLE_MIN_WIDTH = 110


def _print_rows(rows: list[dict]) -> None:
    """A table where it fits; names are what users type, so they are never cut or wrapped."""
    rows = [{**row, "name": row["name"] + (" (bundled)" if row["bundled"] else "")} for row in rows]
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # piped or logged: no terminal width to squeeze into
        console = Console(width=200)
    if console.width < TABLE_MIN_WIDTH:
        for row in rows:
            params, trainable, gflops = _figures(row)
            typer.echo(f"{row['name']}\n  encoder {row['encoder']}; {params} params "
                       f"({trainable} trainable); {gflops} GFLOPs at 224; "
                       f"pretrained weights: {row['pretrained_weights']}")
        return
    table = Table("name", "encoder", "params", "trainable", "GFLOPs@224", "pretrained weights")
    table.columns[0].no_wrap = True
    for row in rows:
        table.add_row(row["name"], row["encoder"], *_figures(row), row["pretrained_weights"])
    console.print(table)


def _bundled_config():
    """The bundled model's config, or None when this install ships none."""
    from petseg.errors import PetsegError
    from petseg.models.files import bundled_model_path, read_config

    try:
        return read_config(bundled_model_path())
    except PetsegError:
        return None


@app.command("summary")
def summary_command(
    model: str = typer.Argument(..., help="A model name (see `petseg models`), a run folder or a .safetensors model file."),
    image_size: int = typer.Option(None, "--image-size", help="Input side in pixels [default: the model's]."),
    depth: int = typer.Option(2, "--depth", min=1, help="How many module levels the table goes down."),
    diagram: Optional[Path] = typer.Option(None, "--diagram", help="Also draw the U-Net into FILE.png or FILE.svg."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --diagram file."),
) -> None:
    """The layer table (layer, type, output shape, params) and the totals, like Keras' summary()."""
    from rich.console import Console
    from rich.table import Table

    from petseg.errors import PetsegError
    from petseg.models.files import resolve_model_path
    from petseg.models import create_model, load_model
    from petseg.models.config import IMAGE_SIZE_RANGE
    from petseg.models.summary import count_parameters, layer_table, measure_gflops

    if image_size is not None and not IMAGE_SIZE_RANGE[0] <= image_size <= IMAGE_SIZE_RANGE[1]:
        low, high = IMAGE_SIZE_RANGE  # 8..31 px reached PyTorch: "Output size is too small", a traceback
        raise PetsegError(f"--image-size: {low}..{high} (what petseg models take), got {image_size}")
    if diagram is not None:  # before the model is built: a diagram that cannot be written is refused first
        _check_diagram_path(diagram, force)
    if Path(model).exists() or model.endswith(".safetensors"):
        path = resolve_model_path(model)  # a run folder -> its best model file; a missing file -> one error line
        if path.suffix.lower() != ".safetensors":
            raise PetsegError(f"{path}: summary reads .safetensors models, not {path.suffix} files")
        network = load_model(path)
    else:
        network = create_model(model)
    size = image_size or network.config.image_size
    if diagram is not None:
        from petseg.models.diagram import draw_unet

        try:
            draw_unet(network, diagram, size)
        except OSError as error:  # the disk filled up, or the folder went away meanwhile
            raise PetsegError(f"{diagram}: cannot write the diagram ({error.strerror or error})") from None
    table = Table("layer", "type", "output shape", "params", title=f"{network.config.architecture} at {size}x{size}")
    for row in layer_table(network, size, depth):
        table.add_row(row.name, row.kind, row.output_shape, f"{row.params:,}")
    console = Console()
    console.print(table)
    total, trainable = count_parameters(network)
    console.print(f"Total params: {total:,}")
    console.print(f"Trainable params: {trainable:,}")
    console.print(f"Non-trainable params: {total - trainable:,}")
    console.print(f"GFLOPs at {size}x{size}: {measure_gflops(network, size):.3f}")
    if diagram is not None:
        console.print(f"diagram: {diagram}")


def _check_diagram_path(diagram: Path, force: bool) -> None:
    from petseg.atomic import prepare_output_folder, refuse_to_overwrite
    from petseg.errors import PetsegError

    if diagram.is_dir():
        raise PetsegError(f"{diagram}: is a folder; name the .png or .svg file to write")
    refuse_to_overwrite(diagram, force)
    prepare_output_folder(diagram.parent)
