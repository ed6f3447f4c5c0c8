"""The web service: `create_app(...)` builds the FastAPI app that `petseg serve` runs.

`app_from_environment` builds it from PETSEG_* variables, for uvicorn's or gunicorn's
worker processes.
"""

from petseg.server.app import create_app
from petseg.server.environment import app_from_environment

__all__ = ["app_from_environment", "create_app"]
