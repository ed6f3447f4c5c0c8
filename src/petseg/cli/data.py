"""`petseg data ...`: download, check and generate datasets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from petseg.cli.app import app
from petseg.limits import MAX_SEED, MAX_TOY_IMAGES

data_app = typer.Typer(help="Download, check and generate datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

DEFAULT_DATA_ROOT = Path("data/oxford-pets")


@data_app.command()
def download(
    root: Path = typer.Option(DEFAULT_DATA_ROOT, "--root", help="Folder to unpack images/ and annotations/ into."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="A mirror of the official download folder."),
    no_verify: bool = typer.Option(False, "--no-verify", help="Skip the md5 check (for mirrors with other archives)."),
    force: bool = typer.Option(False, "--force", help="Replace images/ or annotations/ already in ROOT."),
) -> None:
    """Download the Oxford-IIIT Pet images and trimaps (about 800 MB), resumably."""
    from petseg.data.download import OFFICIAL_BASE_URL, download_pets

    # An empty --base-url is a mistake to report, not a request for the official server.
    download_pets(root, base_url=OFFICIAL_BASE_URL if base_url is None else base_url, verify=not no_verify, force=force)
    typer.echo(f"dataset ready in {root}")


@data_app.command()
def check(
    directory: Path = typer.Argument(..., help="Dataset folder (Oxford layout, or images/ + masks/)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object."),
    mask_values: Optional[str] = typer.Option(
        None, "--mask-values", help="For images/ + masks/: VALUE=CLASS pairs, e.g. 0=background,255=pet."
    ),
    classes: Optional[Path] = typer.Option(None, "--classes", help="For images/ + masks/: a JSON/YAML value -> class file."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Count images per split and report unreadable, disguised, missing or mismatched files.

    Exits 1 when the dataset has problems (unreadable, mislabelled, missing or mismatched files).
    """
    from petseg.data.check import check_dataset, format_report
    from petseg.data.layouts import parse_label_map, read_label_map_file

    if mask_values and classes:
        raise typer.BadParameter("give --mask-values or --classes, not both")
    label_map = parse_label_map(mask_values) if mask_values else read_label_map_file(classes) if classes else None
    report = check_dataset(directory, label_map=label_map, progress=progress and not as_json)
    typer.echo(json.dumps(report, indent=2) if as_json else format_report(report))
    if not report["ok"]:
        raise typer.Exit(1)


@data_app.command()
def toy(
    out_dir: Path = typer.Argument(..., help="Folder to create (Oxford layout)."),
    n: int = typer.Option(24, "--n", help=f"Number of images, 1..{MAX_TOY_IMAGES}."),
    size: int = typer.Option(96, "--size", help="Long side of each image in pixels."),
    seed: int = typer.Option(0, "--seed", help=f"Random seed, 0..{MAX_SEED}: the same seed gives the same dataset."),
    force: bool = typer.Option(False, "--force", help="Replace OUT_DIR if it is not empty."),
) -> None:
    """Generate a small synthetic pet dataset, for offline runs and tests."""
    from petseg.data.toy import make_toy_dataset

    make_toy_dataset(out_dir, n=n, size=size, seed=seed, force=force)
    typer.echo(f"wrote {n} toy images to {out_dir}")
