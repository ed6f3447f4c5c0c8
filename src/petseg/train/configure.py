"""Putting a TrainConfig together, in one place for the CLI and the library alike.

Start from a recipe, a config file (a recipe file or an earlier run's saved config) or
the run being resumed; apply the overrides; the result is validated as it is built.
Whether a resumed run may take the overrides is the run folder's rule
(petseg.run_dir.check_resume), checked against the checkpoint when training starts.
"""

from __future__ import annotations

import os
from dataclasses import MISSING, asdict, fields
from pathlib import Path
from typing import Any, Mapping

from petseg import run_dir
from petseg.errors import PetsegError
from petseg.text_files import parse_json, read_text_file
from petseg.train.recipes import TrainConfig, recipe_settings, setting_names


def read_config_file(path: str | Path, given: Mapping[str, Any] | None = None) -> TrainConfig:
    """A TrainConfig saved as JSON (a recipe file, or the config a run saved in its folder).

    `given` fills the settings the file leaves out (a recipe file without `model`, `out`
    or `data`, run with --model, --out and --data)."""
    path = Path(path)
    if path.is_dir():
        raise PetsegError(f"{path}: is a folder; pass the config file, e.g. {path / run_dir.CONFIG_FILE}")
    values = parse_json(read_text_file(path, "config file"), path)
    if not isinstance(values, dict):
        raise PetsegError(f"{path}: expected a JSON object of settings, got {type(values).__name__}")
    values = {**(given or {}), **values}
    required = (f.name for f in fields(TrainConfig) if f.default is MISSING and f.default_factory is MISSING)
    missing = [name for name in required if name not in values]
    if missing:
        raise PetsegError(f"{path}: missing setting(s) {', '.join(missing)}")
    try:
        return TrainConfig.from_dict(values)
    except PetsegError as error:
        raise PetsegError(f"{path}: {error}") from None
    except TypeError as error:  # a required setting missing, or a value of the wrong kind
        raise PetsegError(f"{path}: not a training config ({error})") from None


def _starting_settings(*, out, model, data, recipe, config_file, resume, overrides) -> dict[str, Any]:
    if resume:
        if config_file is not None:
            raise PetsegError("cannot take a config file: a resumed run keeps its own config", option="resume")
        if out is None:
            raise PetsegError("is needed: the run folder to resume", option="out")
        saved = Path(out) / run_dir.CONFIG_FILE
        if not os.path.lexists(saved):
            raise PetsegError(f"{saved}: missing, so {out} cannot be resumed", advice="drop {resume} to start a run")
        # --model/--recipe are settings like any other here: the resume rule decides.
        return {**asdict(read_config_file(saved)), **_given(model=model, recipe=recipe)}
    if config_file is not None:
        config = read_config_file(config_file, _given(model=model, out=out and str(out), data=data and str(data)))
        if model is not None and model != config.model:
            raise PetsegError(f"{model}: {config_file} configures a {config.model} run", option="model")
        return {**asdict(config), **_given(recipe=recipe)}
    if out is None:
        raise PetsegError("is needed: the run folder to write (or a config file that names one)", option="out")
    if model is None or data is None:
        raise PetsegError("a run needs a model and data", advice="give {model} and {data}, a config file, or {resume}")
    pretrained = overrides.get("pretrained")
    if pretrained is None:  # ImageNet weights by default wherever they are at hand offline
        from petseg.models.registry import has_offline_imagenet_weights

        pretrained = overrides.get("weights") is None and has_offline_imagenet_weights(model)
    return {"model": model, "data": str(data), "out": str(out), "pretrained": pretrained,
            **recipe_settings(recipe or "default", model, pretrained=pretrained, weights=overrides.get("weights"))}


def _given(**values) -> dict[str, Any]:
    return {name: value for name, value in values.items() if value is not None}


def build_config(*, out: str | Path | None = None, model: str | None = None, data: str | Path | None = None,
                 recipe: str | None = None, config_file: str | Path | None = None, resume: bool = False,
                 overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """The validated TrainConfig for a new run, a replayed config file or a resumed run.

    `overrides` maps TrainConfig fields to values, each applied as given (None too);
    `model_options` is merged into the starting options rather than replacing them.
    """
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(setting_names()))
    if unknown:
        raise PetsegError(f"unknown training option(s): {', '.join(unknown)}")
    settings = _starting_settings(out=out, model=model, data=data, recipe=recipe, config_file=config_file,
                                  resume=resume, overrides=overrides)
    settings.update(_given(out=str(out) if out is not None else None, data=str(data) if data is not None else None))
    options = {**settings.get("model_options", {}), **overrides.pop("model_options", {})}
    return TrainConfig.from_dict({**settings, **overrides, "model_options": options})


def resolve_config(model: str, data: str, out: str, recipe: str = "default", **overrides: Any) -> TrainConfig:
    """A recipe's values with the given overrides (None means 'keep the recipe's')."""
    return build_config(model=model, data=data, out=out, recipe=recipe, overrides=_given(**overrides))
