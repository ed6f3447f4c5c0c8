"""`petseg data ...`: download, check and generate datasets."""

from __future__ import annotations

from pathlib import Path

import typer

from petseg.cli.app import app

data_app = typer.Typer(help="Download, check and generate datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
