"""The web service: `create_app(...)` builds the FastAPI app that `petseg serve` runs."""

from petseg.server.app import create_app

__all__ = ["create_app"]
