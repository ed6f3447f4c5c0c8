"""Encoders: the downsampling half of a U-Net.

The contract every encoder keeps, and the only thing decoders rely on:
`forward(images)` returns a list of feature maps, highest resolution first, and
`.channels[i]` / `.reductions[i]` give the i-th map's channel count and its stride
relative to the input (e.g. reductions 2, 4, 8, 16, 32 for the MobileNets).
"""

from __future__ import annotations

import torch
from torch import nn

from petseg.errors import PetsegError


class TimmEncoder(nn.Module):
    """A timm backbone created with `features_only=True`; its weights live in `.net`."""

    def __init__(self, timm_name: str, pretrained: bool = False):
        super().__init__()
        import timm

        try:
            self.net = timm.create_model(timm_name, features_only=True, pretrained=pretrained)
        except (RuntimeError, NotImplementedError) as error:
            if "features_only" not in str(error):
                raise
            message = f"timm model {timm_name!r} cannot be a U-Net encoder: it has no features_only mode"
            raise PetsegError(message) from None
        self.timm_name = timm_name
        self.channels = list(self.net.feature_info.channels())
        self.reductions = list(self.net.feature_info.reduction())
        # The preprocessing its ImageNet weights were trained with.
        pretrained_cfg = getattr(self.net, "pretrained_cfg", None) or {}
        self.mean = tuple(pretrained_cfg.get("mean", (0.485, 0.456, 0.406)))
        self.std = tuple(pretrained_cfg.get("std", (0.229, 0.224, 0.225)))

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return list(self.net(images))


class ExpansionEncoder(nn.Module):
    """A timm MobileNet whose skips are its expansion activations, where Keras U-Nets took them.

    The reference notebook (like TensorFlow's pix2pix tutorial) tapped `block_1_expand_relu`,
    `block_3_expand_relu`, `block_6_expand_relu`, `block_13_expand_relu` and
    `block_16_expand_relu`: the 1x1 expansion (conv + BN + ReLU6) of each block that halves
    the resolution, read before its strided depthwise conv, and that of the last block.
    The network is cut right after the last tap, so none of its unused layers is kept.
    (timm's own `feature_location="expansion"` reads after the depthwise conv instead.)
    """

    def __init__(self, timm_name: str, pretrained: bool = False):
        super().__init__()
        import timm

        full = timm.create_model(timm_name, pretrained=pretrained)
        blocks = [block for stage in full.blocks for block in stage]
        strided = [index for index, block in enumerate(blocks) if _depthwise_stride(block) == 2]
        taps = [*strided, len(blocks) - 1]
        # The last block is only needed up to its expansion.
        blocks[-1] = nn.Sequential(_expansion_conv(blocks[-1]), _expansion_activation(blocks[-1]))
        self.net = nn.Sequential(full.conv_stem, full.bn1, *blocks)
        self.timm_name = timm_name
        self._taps = [_expansion_activation(blocks[index]) for index in taps]
        self.channels = [_expansion_conv(blocks[index]).out_channels for index in taps]
        # An expansion is read before its block's strided conv: at the resolution reached so far.
        reduction, reductions = full.conv_stem.stride[0], []
        for index, block in enumerate(blocks):
            if index in taps:
                reductions.append(reduction)
            reduction *= _depthwise_stride(block)
        self.reductions = reductions
        pretrained_cfg = getattr(full, "pretrained_cfg", None) or {}
        self.mean = tuple(pretrained_cfg.get("mean", (0.485, 0.456, 0.406)))
        self.std = tuple(pretrained_cfg.get("std", (0.229, 0.224, 0.225)))

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        features: list[torch.Tensor] = []
        handles = [tap.register_forward_hook(lambda module, args, output: features.append(output))
                   for tap in self._taps]
        try:
            self.net(images)
        finally:
            for handle in handles:
                handle.remove()
        return features


def _depthwise_stride(block: nn.Module) -> int:
    conv = getattr(block, "conv_dw", None)
    return conv.stride[0] if conv is not None and hasattr(block, "conv_pw") else 1


def _expansion_conv(block: nn.Module) -> nn.Conv2d:
    """The 1x1 expansion of an inverted residual (conv_pw), or a final conv+BN+act block's conv."""
    if isinstance(block, nn.Sequential):
        return block[0]
    return block.conv_pw if hasattr(block, "conv_pw") else block.conv


def _expansion_activation(block: nn.Module) -> nn.Module:
    """The module whose output is the expansion activation (timm's bn1 is BN + activation)."""
    return block[1] if isinstance(block, nn.Sequential) else block.bn1


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 'same' convolution + BatchNorm + ReLU: the brick of both U-Net halves."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(conv_bn_relu(in_channels, out_channels), conv_bn_relu(out_channels, out_channels))


class ClassicUnetEncoder(nn.Module):
    """The from-scratch U-Net encoder: double 3x3 conv blocks, max-pool between them.

    Widths double at each level (width, 2*width, ..., 16*width); the first map keeps
    the input's resolution, so reductions are 1, 2, 4, 8, 16.
    """

    def __init__(self, width: int = 16, depth: int = 4):
        super().__init__()
        if width < 1 or depth < 1:
            raise PetsegError(f"unet_diy: width and depth must be >= 1, got width={width}, depth={depth}")
        self.channels = [width * 2**level for level in range(depth + 1)]
        self.reductions = [2**level for level in range(depth + 1)]
        self.mean = (0.485, 0.456, 0.406)
        self.std = (0.229, 0.224, 0.225)
        in_channels = [3, *self.channels[:-1]]
        self.levels = nn.ModuleList(double_conv(c_in, c_out) for c_in, c_out in zip(in_channels, self.channels))
        # Floor pooling: odd sizes lose a row, and the decoder resizes back to each skip.
        self.pool = nn.MaxPool2d(2)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        features = [self.levels[0](images)]
        for level in self.levels[1:]:
            features.append(level(self.pool(features[-1])))
        return features
