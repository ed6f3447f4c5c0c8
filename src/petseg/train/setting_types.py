"""Every TrainConfig setting has the type its annotation names, whoever wrote the config
(a JSON file, Python code, a checkpoint): checked before any value is used, so a config
file with "epochs": "ten" or "model_options": "x" is one line, not a traceback later."""

from __future__ import annotations

import types
import typing
from typing import Any

from petseg.errors import PetsegError, quoted
from petseg.limits import finite_float

SHOWN_CHARACTERS = 60


def conforms(value: Any, hint: Any) -> bool:
    """Whether a JSON-like `value` has the annotated type (JSON lists stand in for tuples)."""
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(conforms(value, argument) for argument in arguments)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return finite_float(value) is not None
    if hint is str:
        return isinstance(value, str)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return False
        if len(arguments) == 2 and arguments[1] is Ellipsis:
            return all(conforms(item, arguments[0]) for item in value)
        return len(value) == len(arguments) and all(map(conforms, value, arguments))
    if origin is dict:
        return isinstance(value, dict) and all(isinstance(key, str) for key in value)
    raise TypeError(f"no check for settings of type {hint}")  # a new field's type: teach conforms


def described(hint: Any) -> str:
    """The type in words: 'an integer', 'a list of 2 numbers or null'."""
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(described(argument) for argument in arguments)
    if origin is tuple:
        if len(arguments) == 2 and arguments[1] is Ellipsis:
            return f"a list of {described(arguments[0]).split(' ', 1)[1]}s"
        return f"a list of {len(arguments)} {described(arguments[0]).split(' ', 1)[1]}s"
    words = {type(None): "null", bool: "true or false", int: "an integer", float: "a finite number", str: "a text",
             dict: "a mapping"}
    return words.get(origin or hint, str(hint))


def check_setting_types(config, paths: tuple[str, ...] = ()) -> None:
    """PetsegError naming the first setting of `config` (a dataclass) whose value has the wrong
    type, or the first of `paths` (settings that name a file or folder) that is empty text:
    to Python that is the current folder, where a config file's "out": "" wrote a whole run."""
    for name, hint in typing.get_type_hints(type(config)).items():
        value = getattr(config, name)
        if not conforms(value, hint):
            raise PetsegError(f"must be {described(hint)}, got {quoted(value, SHOWN_CHARACTERS)}", option=name)
    for name in paths:
        if getattr(config, name) == "":
            raise PetsegError("must name a file or folder, got '' (an empty path is the current folder)", option=name)
