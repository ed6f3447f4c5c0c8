"""petseg's command line. Each module registers its commands on the one `app`;
heavy imports (torch, timm, onnxruntime, fastapi) happen inside the commands."""

from petseg.cli.app import app, main
from petseg.cli import data, models, training, evaluate, cutout, serve, demo  # noqa: F401  (registers commands)

__all__ = ["app", "main"]
