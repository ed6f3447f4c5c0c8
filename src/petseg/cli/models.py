"""`petseg models` and `petseg summary`: what the zoo holds and what a model looks like."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from petseg.cli.app import app


@app.command("models")
def models_command(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON list instead of a table."),
) -> None:
    """List the registered models: encoder, parameters, GFLOPs at 224x224, pretrained weights."""
    from petseg.models import list_models
    from petseg.models.summary import describe

    bundled = _bundled_config()
    rows = [describe(name) for name in list_models()]
    for row in rows:
        row["bundled"] = bundled is not None and row["name"] == bundled.architecture
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "encoder", "params", "trainable", "GFLOPs@224", "pretrained weights")
    for row in rows:
        table.add_row(
            row["name"] + (" (bundled)" if row["bundled"] else ""),
            row["encoder"],
            f"{row['params']:,}",
            f"{row['trainable_params']:,}",
            f"{row['gflops_224']:.2f}",
            row["pretrained_weights"],
        )
    Console().print(table)
    if bundled is not None:
        typer.echo(f"(bundled): the trained pet model inside the package, {bundled.architecture} at "
                   f"{bundled.image_size} px, used by cutout, serve and Segmenter.load() when no --model is given.")
    typer.echo("Any timm backbone with features_only works too, as unet_<timm name> (e.g. unet_resnet18).")


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
    image_size: int = typer.Option(None, "--image-size", min=8, help="Input side in pixels [default: the model's]."),
    depth: int = typer.Option(2, "--depth", min=1, help="How many module levels the table goes down."),
) -> None:
    """The layer table (layer, type, output shape, params) and the totals, like Keras' summary()."""
    from rich.console import Console
    from rich.table import Table

    from petseg.errors import PetsegError
    from petseg.inference.segmenter import resolve_model_path
    from petseg.models import create_model, load_model
    from petseg.models.summary import count_parameters, layer_table, measure_gflops

    if Path(model).exists() or model.endswith(".safetensors"):
        path = resolve_model_path(model)  # a run folder -> its best model file; a missing file -> one error line
        if path.suffix.lower() != ".safetensors":
            raise PetsegError(f"{path}: summary reads .safetensors models, not {path.suffix} files")
        network = load_model(path)
    else:
        network = create_model(model)
    size = image_size or network.config.image_size
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
