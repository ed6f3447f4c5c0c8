"""Commands: evaluate (to be written)."""

from petseg.cli.app import app  # noqa: F401
