"""The typed model config stored inside every model file.

A model file rebuilds itself from this alone: architecture and options say what to
construct, image size / mean / std say how to preprocess, labels name the outputs.
A model file is user input: every value is checked for type and range when the config
is made, before anything is built from it (a config asking for 10^9 classes would
otherwise allocate gigabytes before failing).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from petseg.errors import PetsegError, clipped, one_line
from petseg.limits import is_whole_number

from petseg import __version__
from petseg.data.labels import CLASS_NAMES

# The metadata key holding `ModelConfig.to_json()`, in .safetensors and .onnx files alike.
CONFIG_METADATA_KEY = "petseg_config"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ModelConfig:
    architecture: str
    num_classes: int = 3
    image_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    labels: tuple[str, ...] = CLASS_NAMES
    # Constructor options of the architecture (decoder, widths, freeze_encoder, ...).
    options: dict[str, Any] = field(default_factory=dict)
    petseg_version: str = __version__

    def __post_init__(self):
        check_config_values(self)
        self.mean, self.std, self.labels = tuple(self.mean), tuple(self.std), tuple(self.labels)
        self.options = dict(self.options)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        if not isinstance(text, str) or len(text) > MAX_CONFIG_CHARACTERS:
            raise InvalidConfigError(f"the config must be JSON text of at most {MAX_CONFIG_CHARACTERS} characters")
        try:
            values = json.loads(text)
        except RecursionError:
            raise InvalidConfigError("the config JSON is nested too deeply") from None
        if not isinstance(values, dict):
            raise InvalidConfigError(f"the config must be a JSON object, got {type(values).__name__}")
        if "architecture" not in values:
            raise InvalidConfigError("the config names no architecture")
        return cls(**{name: values[name] for name in cls.__dataclass_fields__ if name in values})


class InvalidConfigError(PetsegError, ValueError):
    """A model config value of the wrong type or out of range (a ValueError too, for callers that catch those)."""


# Far beyond any model petseg trains, far below what would exhaust memory when built.
MAX_CLASSES = 256
# Probabilities of one photo at the model's size: 3 classes at 2048 px are 12.6 M; 256
# classes at 2048 px would be 4.3 GB a photo.
MAX_OUTPUT_VALUES = 2**26
IMAGE_SIZE_RANGE = (32, 2048)
MAX_DECODER_WIDTH = 1024  # the pix2pix decoder's own default starts at 1024
MAX_DECODER_BLOCKS = 6
DIY_WIDTH_RANGE = (1, 64)
DIY_DEPTH_RANGE = (1, 6)
MAX_DIY_CHANNELS = 1024  # unet_diy's deepest level has width * 2**depth (the 2015 U-Net: 64 * 2**4)
STD_RANGE = (1e-6, 1e6)
MAX_CONFIG_CHARACTERS = 65_536
MAX_TEXT = 200  # architecture, label, decoder names


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_integer(name: str, value: Any, low: int, high: int) -> int:
    """`value` if it is an int (not a bool, not a float) within low..high, else an InvalidConfigError."""
    if not is_whole_number(value, low, high):
        raise InvalidConfigError(f"{name} must be an integer in {low}..{high}, got {_shown(value)}")
    return value


def _check_text(name: str, value: Any) -> None:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_TEXT:
        raise InvalidConfigError(f"{name} must be a text of 1..{MAX_TEXT} characters, got {_shown(value)}")


def _check_numbers(name: str, value: Any, low: float, high: float) -> None:
    numbers = list(value) if isinstance(value, (list, tuple)) else None
    if (
        numbers is None or len(numbers) != 3
        or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in numbers)
        or not all(low <= x <= high for x in numbers)
    ):  # fmt: skip
        raise InvalidConfigError(f"{name} must be 3 numbers (R, G, B) in {low:g}..{high:g}, got {_shown(value)}")


# Every architecture's constructor options (create_model checks which one takes which); nothing
# else may come from a config, least of all create_model's own parameters.
CONSTRUCTOR_OPTIONS = ("decoder", "decoder_channels", "freeze_encoder", "width", "depth")


def check_options(options: Any, prefix: str = "options.") -> None:
    """Constructor options: a dict of known types, with widths and depths bounded so that building stays small.

    `prefix` names them in messages: "options.width" in a model file's config.
    """
    if not isinstance(options, dict) or not all(isinstance(key, str) for key in options):
        raise InvalidConfigError(f"options must be a mapping of option names to values, got {_shown(options)}")
    unknown = sorted(set(options) - set(CONSTRUCTOR_OPTIONS))
    if unknown:  # "weights" or "pretrained" in a model file would read another file or go online
        raise InvalidConfigError(f"{prefix}{clipped(one_line(unknown[0]), 60)} is not an option; "
                                 f"the options are {', '.join(CONSTRUCTOR_OPTIONS)}")
    for key, value in options.items():
        if key == "decoder":
            _check_text(f"{prefix}decoder", value)
        elif key == "decoder_channels":
            if value is None:
                continue
            if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= MAX_DECODER_BLOCKS:
                raise InvalidConfigError(
                    f"{prefix}decoder_channels must be a list of 1..{MAX_DECODER_BLOCKS} widths, got {_shown(value)}"
                )
            for width in value:
                check_integer(f"{prefix}decoder_channels: each width", width, 1, MAX_DECODER_WIDTH)
        elif key == "freeze_encoder":
            if not isinstance(value, bool):
                raise InvalidConfigError(f"{prefix}freeze_encoder must be true or false, got {_shown(value)}")
        else:  # width, depth
            check_integer(f"{prefix}{key}", value, *(DIY_WIDTH_RANGE if key == "width" else DIY_DEPTH_RANGE))
    deepest = options.get("width", 16) * 2 ** options.get("depth", 4)
    if ("width" in options or "depth" in options) and deepest > MAX_DIY_CHANNELS:
        raise InvalidConfigError(
            f"{prefix}width * 2**{prefix}depth (the deepest level's channels) must be at most {MAX_DIY_CHANNELS}, got {deepest}"
        )


def check_config_values(config: ModelConfig) -> None:
    """Raise InvalidConfigError naming the first field of the wrong type or out of range."""
    _check_text("architecture", config.architecture)
    check_integer("num_classes", config.num_classes, 1, MAX_CLASSES)
    check_integer("image_size", config.image_size, *IMAGE_SIZE_RANGE)
    if config.num_classes * config.image_size**2 > MAX_OUTPUT_VALUES:
        raise InvalidConfigError(
            f"num_classes x image_size^2 must be at most {MAX_OUTPUT_VALUES:,} (the probabilities of one photo, "
            f"{MAX_OUTPUT_VALUES * 4 // 2**20} MB), got {config.num_classes} x {config.image_size}^2"
        )
    _check_numbers("mean", config.mean, 0.0, 1.0)
    _check_numbers("std", config.std, *STD_RANGE)
    labels = config.labels
    if not isinstance(labels, (list, tuple)) or len(labels) != config.num_classes:
        raise InvalidConfigError(f"labels must be a list of num_classes ({config.num_classes}) names, got {_shown(labels)}")
    for label in labels:
        _check_text("labels: each name", label)
    if len(set(labels)) != len(labels):
        raise InvalidConfigError(f"labels must name each class once, got {_shown(labels)}")
    check_options(config.options)
    if not isinstance(config.petseg_version, str) or len(config.petseg_version) > MAX_TEXT:
        raise InvalidConfigError(f"petseg_version must be a short text, got {_shown(config.petseg_version)}")
