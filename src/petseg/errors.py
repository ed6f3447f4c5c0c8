"""Errors a user can cause and fix. The CLI prints them as one line, no traceback."""

from __future__ import annotations

import re
import reprlib
import string
from typing import Callable


class PetsegError(Exception):
    """A user-facing error: the message names the file or option and what is wrong.

    `advice` says how to fix it with an option, the option's name in braces: "raise
    {max_pixels}". `option` is the setting a message is about, named before it: option
    "epochs" with "must be at least 1, got 0". Each front end names options its own way:
    the command line as flags (--max-pixels, see `worded`), Python as the keyword
    argument (max_pixels, str()), and a front end without such an option (the server's
    form) leaves the advice out.
    """

    exit_code = 2

    def __init__(self, message: str, *, advice: str | None = None, option: str | None = None) -> None:
        super().__init__(message)
        self.message, self.advice, self.option = message, advice, option

    def __str__(self) -> str:
        return self.worded(lambda option: option)

    def worded(self, name_option: Callable[[str], str] | None) -> str:
        """The message, with its options named by `name_option` (None: as in Python, and no advice)."""
        message = self.message
        if self.option is not None:
            message = f"{name_option(self.option) if name_option else self.option} {message}"
        if self.advice is None or name_option is None:
            return message
        options = [field for _, field, _, _ in string.Formatter().parse(self.advice) if field]
        return f"{message}; {self.advice.format(**{option: name_option(option) for option in options})}"


# User input echoed in a message is cut to this many characters: a megabyte of it does not come back whole.
ECHO_CHARACTERS = 100


def clipped(text: str, limit: int = ECHO_CHARACTERS) -> str:
    """`text` as a message shows it: at most `limit` characters and an ellipsis."""
    return text if len(text) <= limit else text[:limit] + "…"


# Containers are shown a few items deep and wide: repr() of a YAML alias bomb (341 bytes
# standing for a billion strings) would be gigabytes.
_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxstring = _SHORT_REPR.maxother = _SHORT_REPR.maxlong = ECHO_CHARACTERS


def quoted(value, limit: int = ECHO_CHARACTERS) -> str:
    """A value the user gave, as a message echoes it: repr() of a text clipped to `limit`
    characters ('xxx…'), anything else as reprlib writes it, bounded whatever its size."""
    if isinstance(value, str):
        return repr(clipped(value, limit))
    try:
        return clipped(_SHORT_REPR.repr(value), limit)
    except Exception:  # an int of over 4300 digits, an object whose repr() fails
        return f"<a {type(value).__name__}>"


# Control characters (C0 and C1: newlines, ESC, ...) in a file name would split a one-line
# message or drive the terminal; messages show them escaped, as Python writes them.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def one_line(text: str) -> str:
    """`text` with its control characters escaped: "a\nb" -> "a\\nb", ESC -> "\\x1b"."""
    return _CONTROL_CHARACTERS.sub(lambda match: repr(match.group())[1:-1], text)


def command_line_flag(option: str) -> str:
    """max_pixels -> --max-pixels: how the CLI words an error's advice."""
    return "--" + option.replace("_", "-")


class ImageError(PetsegError):
    """An image that cannot be decoded, or one that breaks a limit."""


class LabelError(PetsegError):
    """A mask whose values are not valid labels."""


class NotAnImageError(ImageError):
    """Content that is not an image at all (empty, text, unknown format)."""


class ModelError(PetsegError):
    """A model file that fails on a run (a wrong output, more memory than allowed): the model
    is at fault, not the photo, so the server answers 500, not a client error."""


# The light install (`pip install petseg`) cuts out photos on ONNX Runtime; these
# modules come only with the training install, pyproject's [train] extra.
TRAIN_INSTALL = "pip install 'petseg[train]'"
_TRAIN_MODULES = {
    "torch": "PyTorch",
    "torchvision": "PyTorch",
    "timm": "timm",
    "onnx": "onnx",
    "onnxscript": "onnxscript",
    "matplotlib": "matplotlib",
    "tensorboard": "TensorBoard",
}


class TrainInstallMissing(PetsegError):
    """Something of the training install used without it; `package` is what is missing.
    The CLI names its command instead of a Python function ("petseg export needs PyTorch")."""

    def __init__(self, what: str, package: str) -> None:
        super().__init__(f"{what} needs {package}: {TRAIN_INSTALL}")
        self.package = package


def missing_train_extra(error: ModuleNotFoundError, what: str) -> TrainInstallMissing | None:
    """"<what> needs PyTorch: pip install 'petseg[train]'" when `error` is a [train] module, else None."""
    package = _TRAIN_MODULES.get((error.name or "").partition(".")[0])
    return None if package is None else TrainInstallMissing(what, package)


def needs_train_install(what: str):
    """Decorator for the Python API's training-install functions: a [train] module missing
    while one runs is TrainInstallMissing ("<what> needs PyTorch: pip install
    'petseg[train]'"), not a bare ModuleNotFoundError from deep inside."""
    import functools

    def decorate(function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            try:
                return function(*args, **kwargs)
            except ModuleNotFoundError as error:
                problem = missing_train_extra(error, what)
                if problem is None:
                    raise
            raise problem

        return wrapper

    return decorate
