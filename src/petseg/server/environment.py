"""The app built from environment variables, for process managers that import it by name.

uvicorn's `--workers` and gunicorn start each worker process by importing the app, so
the settings of `create_app` travel as environment variables:

    PETSEG_MODEL=runs/v3 PETSEG_THREADS=2 uvicorn --factory petseg.server:app_from_environment --workers 4

Unset variables keep `create_app`'s defaults.
"""

from __future__ import annotations

import os
from typing import Any, Callable, MutableMapping

from fastapi import FastAPI

from petseg.errors import PetsegError, clipped
from petseg.server.app import create_app

def boolean(text: str) -> bool:
    """True / False as `str()` writes them, or 1 / 0, yes / no (any case); else ValueError."""
    answers = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
    if text.strip().lower() not in answers:
        raise ValueError(text)
    return answers[text.strip().lower()]


boolean.__name__ = "boolean (true or false)"  # how the error names the type

# create_app keyword -> (environment variable, type)
VARIABLES: dict[str, tuple[str, Callable[[str], Any]]] = {
    "model": ("PETSEG_MODEL", str),
    "threads": ("PETSEG_THREADS", int),
    "queue_size": ("PETSEG_QUEUE", int),
    "max_upload_mb": ("PETSEG_MAX_UPLOAD_MB", float),
    "max_pixels": ("PETSEG_MAX_PIXELS", int),
    "read_timeout_s": ("PETSEG_READ_TIMEOUT", float),
    "flip_tta": ("PETSEG_FLIP_TTA", boolean),
}


def export_settings(environment: MutableMapping[str, str], **settings: Any) -> None:
    """Make `environment` build create_app(**settings) in `app_from_environment`.

    Settings left at None are unset there, not inherited: a PETSEG_MODEL left in the shell
    made `petseg serve --workers 2` serve another model (or none) than the one it checked.
    """
    for name, (variable, _) in VARIABLES.items():
        value = settings.get(name)
        if value is None:
            environment.pop(variable, None)
        else:
            environment[variable] = str(value)


def app_from_environment() -> FastAPI:
    settings = {}
    for name, (variable, kind) in VARIABLES.items():
        text = os.environ.get(variable)
        if text is None:
            continue
        try:
            settings[name] = kind(text)
        except ValueError:
            raise PetsegError(f"{variable}={clipped(text)!r} is not a valid {kind.__name__}") from None
    try:
        return create_app(**settings)
    except PetsegError as error:  # named as the variables that set them, not as create_app's keywords
        problem = error.worded(lambda option: VARIABLES[option][0] if option in VARIABLES else option)
    raise PetsegError(problem)
