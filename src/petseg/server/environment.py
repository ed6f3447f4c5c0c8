"""The app built from environment variables, for process managers that import it by name.

uvicorn's `--workers` and gunicorn start each worker process by importing the app, so
the settings of `create_app` travel as environment variables:

    PETSEG_MODEL=runs/v3 PETSEG_THREADS=2 uvicorn --factory petseg.server:app_from_environment --workers 4

Unset variables keep `create_app`'s defaults.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from fastapi import FastAPI

from petseg.errors import PetsegError
from petseg.server.app import create_app

# create_app keyword -> (environment variable, type)
VARIABLES: dict[str, tuple[str, Callable[[str], Any]]] = {
    "model": ("PETSEG_MODEL", str),
    "threads": ("PETSEG_THREADS", int),
    "queue_size": ("PETSEG_QUEUE", int),
    "max_upload_mb": ("PETSEG_MAX_UPLOAD_MB", float),
    "max_pixels": ("PETSEG_MAX_PIXELS", int),
    "read_timeout_s": ("PETSEG_READ_TIMEOUT", float),
}


def settings_as_environment(**settings: Any) -> dict[str, str]:
    """The variables that make `app_from_environment` build create_app(**settings)."""
    return {VARIABLES[name][0]: str(value) for name, value in settings.items() if value is not None}


def app_from_environment() -> FastAPI:
    settings = {}
    for name, (variable, kind) in VARIABLES.items():
        text = os.environ.get(variable)
        if text is None:
            continue
        try:
            settings[name] = kind(text)
        except ValueError:
            raise PetsegError(f"{variable}={text[:100]!r} is not a valid {kind.__name__}") from None
    return create_app(**settings)
