"""The typed model config stored inside every model file.

A model file rebuilds itself from this alone: architecture and options say what to
construct, image size / mean / std say how to preprocess, labels name the outputs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

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

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        values = json.loads(text)
        known = {name: values[name] for name in cls.__dataclass_fields__ if name in values}
        for name in ("mean", "std", "labels"):
            if name in known:
                known[name] = tuple(known[name])
        return cls(**known)
