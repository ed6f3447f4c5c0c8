"""Decoders: the upsampling half of a U-Net, sized from the encoder's channels and strides.

Both decoders walk the encoder's features from the deepest map up, and both resize
to each skip's exact size before concatenating, so inputs whose sides are not
multiples of 32 (250x333, 65x97) cannot break a concat.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from petseg.errors import PetsegError
from petseg.models.encoders import double_conv

DECODERS = ("unet", "pix2pix")


class UpBlock(nn.Module):
    """Upsample to the skip's size (nearest), concat the skip, then 2x conv-BN-ReLU."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.convs = double_conv(in_channels + skip_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None, size: Sequence[int]) -> torch.Tensor:
        x = F.interpolate(x, size=tuple(size), mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.convs(x)


class UnetDecoder(nn.Module):
    """The modern U-Net decoder (segmentation_models.pytorch's `UnetDecoder`).

    One block per skip. When the encoder's first map is already downsampled (stride 2
    for timm backbones), one more block without a skip brings the result to the
    input's full resolution. Default widths follow the encoder: each block is as wide
    as the skip it joins, the last one as wide as the first skip.
    """

    resizes_logits = False

    def __init__(self, channels: Sequence[int], reductions: Sequence[int], widths: Sequence[int] | None = None):
        super().__init__()
        skip_channels = list(channels[:-1])[::-1]  # deepest skip first
        self.has_full_resolution_block = reductions[0] > 1
        if self.has_full_resolution_block:
            skip_channels.append(0)
        if widths is None:
            widths = [c or channels[0] for c in skip_channels]
        self.widths = _check_widths(widths, len(skip_channels), "unet")
        in_channels = [channels[-1], *self.widths[:-1]]
        self.blocks = nn.ModuleList(
            UpBlock(c_in, c_skip, c_out) for c_in, c_skip, c_out in zip(in_channels, skip_channels, self.widths)
        )

    @property
    def out_channels(self) -> int:
        return self.widths[-1]

    def make_head(self, num_classes: int) -> nn.Module:
        return nn.Conv2d(self.out_channels, num_classes, kernel_size=1)

    def forward(self, features: list[torch.Tensor], input_size: Sequence[int]) -> torch.Tensor:
        skips = features[:-1][::-1]
        x = features[-1]
        for index, block in enumerate(self.blocks):
            skip = skips[index] if index < len(skips) else None
            x = block(x, skip, skip.shape[-2:] if skip is not None else input_size)
        return x


class TransposedUpBlock(nn.Module):
    """pix2pix's `upsample`: stride-s 3x3 transposed conv + BN + ReLU, then concat the skip."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.up = nn.Sequential(
            transposed_conv(in_channels, out_channels, stride, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        # The transposed conv multiplies the size by the stride; an odd skip is one
        # pixel smaller, so land on its exact size before the concat.
        x = F.interpolate(self.up(x), size=tuple(skip.shape[-2:]), mode="bilinear", align_corners=False)
        return torch.cat([x, skip], dim=1)


class Pix2PixDecoder(nn.Module):
    """The reference notebook's decoder (TensorFlow's pix2pix `upsample` blocks).

    Default widths 1024, 512, 256, 128 for five encoder maps (doubling per extra
    level); the head is one more transposed conv straight to the classes.
    """

    resizes_logits = True  # the head's transposed conv doubles the size; resize to the input

    def __init__(self, channels: Sequence[int], reductions: Sequence[int], widths: Sequence[int] | None = None):
        super().__init__()
        block_count = len(channels) - 1
        if widths is None:
            widths = [128 * 2 ** (block_count - 1 - index) for index in range(block_count)]
        self.widths = _check_widths(widths, block_count, "pix2pix")
        skip_channels = list(channels[:-1])[::-1]
        strides = [max(1, deep // shallow) for deep, shallow in zip(reductions[::-1], reductions[-2::-1])]
        in_channels = [channels[-1], *(w + c for w, c in zip(self.widths[:-1], skip_channels[:-1]))]
        self.blocks = nn.ModuleList(
            TransposedUpBlock(c_in, c_skip, c_out, stride)
            for c_in, c_skip, c_out, stride in zip(in_channels, skip_channels, self.widths, strides)
        )
        self.out_channels = self.widths[-1] + skip_channels[-1] if block_count else channels[-1]
        self.head_stride = reductions[0]

    def make_head(self, num_classes: int) -> nn.Module:
        return transposed_conv(self.out_channels, num_classes, self.head_stride, bias=True)

    def forward(self, features: list[torch.Tensor], input_size: Sequence[int]) -> torch.Tensor:
        x = features[-1]
        for block, skip in zip(self.blocks, features[:-1][::-1]):
            x = block(x, skip)
        return x


def transposed_conv(in_channels: int, out_channels: int, stride: int, bias: bool) -> nn.ConvTranspose2d:
    """3x3 transposed conv whose output is exactly `stride` times its input (Keras 'same')."""
    return nn.ConvTranspose2d(
        in_channels, out_channels, kernel_size=3, stride=stride, padding=1, output_padding=stride - 1, bias=bias
    )


def build_decoder(kind: str, channels: Sequence[int], reductions: Sequence[int], widths: Sequence[int] | None):
    if kind == "unet":
        return UnetDecoder(channels, reductions, widths)
    if kind == "pix2pix":
        return Pix2PixDecoder(channels, reductions, widths)
    raise PetsegError(f"unknown decoder {kind!r}; valid decoders: {', '.join(DECODERS)}")


def _check_widths(widths: Sequence[int], expected: int, kind: str) -> list[int]:
    widths = [int(width) for width in widths]
    if len(widths) != expected or min(widths, default=1) < 1:
        raise PetsegError(
            f"decoder_channels for the {kind} decoder of this encoder must be {expected} positive widths, got {widths}"
        )
    return widths
