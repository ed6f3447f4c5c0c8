"""`petseg demo`: train, evaluate and cut out on generated data, offline."""

from __future__ import annotations

from pathlib import Path

import typer

from petseg.cli.app import app


@app.command()
def demo(
    out: Path = typer.Option(Path("demo-output"), "--out", "-o", help="Folder for the demo's data, run and pictures."),
    epochs: int = typer.Option(12, help="Training epochs (about 4 s each on a laptop CPU)."),
    force: bool = typer.Option(False, "--force", help="Replace the files of an earlier demo in --out."),
) -> None:
    """Generate toy pets, train a small U-Net on the CPU, evaluate it and cut out a few photos."""
    from petseg.demo import describe, run_demo

    typer.echo(describe(run_demo(out, epochs=epochs, force=force)))
