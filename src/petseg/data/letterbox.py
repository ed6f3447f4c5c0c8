"""Fit a photo into the model's square input without distorting it, and back.

Training, evaluation and cutouts all go through this one geometry, so the network
sees pets with the proportions it will meet at inference time. The padding is the
normalisation mean (zero after `normalize`) and masks pad with IGNORE_INDEX, so
padded pixels never count in the loss or in the metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image

from petseg.data.labels import IGNORE_INDEX


@dataclass(frozen=True)
class Letterbox:
    """Where a source_height x source_width photo sits inside a size x size input."""

    source_height: int
    source_width: int
    size: int
    height: int
    width: int
    top: int
    left: int

    @classmethod
    def fit(cls, source_height: int, source_width: int, size: int) -> "Letterbox":
        scale = size / max(source_height, source_width)
        height = max(1, min(size, round(source_height * scale)))
        width = max(1, min(size, round(source_width * scale)))
        return cls(source_height, source_width, size, height, width, (size - height) // 2, (size - width) // 2)

    def _paste(self, resized: np.ndarray, fill) -> np.ndarray:
        canvas = np.empty((self.size, self.size, *resized.shape[2:]), dtype=resized.dtype)
        canvas[...] = fill
        canvas[self.top : self.top + self.height, self.left : self.left + self.width] = resized
        return canvas

    def apply_image(self, image: np.ndarray, fill: Sequence[int] | int = 0) -> np.ndarray:
        """(H, W, 3) uint8 -> (size, size, 3) uint8; bilinear with antialiasing."""
        resized = Image.fromarray(image).resize((self.width, self.height), Image.BILINEAR)
        return self._paste(np.asarray(resized), np.asarray(fill, dtype=np.uint8))

    def apply_mask(self, mask: np.ndarray) -> np.ndarray:
        """(H, W) labels -> (size, size); nearest-neighbour only, padding ignored."""
        resized = Image.fromarray(mask).resize((self.width, self.height), Image.NEAREST)
        return self._paste(np.asarray(resized), IGNORE_INDEX)

    def restore(self, maps):
        """(N, C, size, size) torch maps -> (N, C, source_height, source_width), bilinear."""
        import torch.nn.functional as F

        inner = maps[..., self.top : self.top + self.height, self.left : self.left + self.width]
        return F.interpolate(inner, size=(self.source_height, self.source_width), mode="bilinear", align_corners=False)


def mean_fill(mean: Sequence[float]) -> tuple[int, ...]:
    """The uint8 colour that normalises to zero: the padding of letterboxed images."""
    return tuple(int(round(channel * 255)) for channel in mean)


def normalization(mean: Sequence[float], std: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel float32 (scale, shift) with (x / 255 - mean) / std == x * scale - shift.

    One fused multiply-add per value, shared by the torch and the numpy versions below.
    """
    std = np.asarray(std, dtype=np.float32)
    return np.float32(1.0) / (np.float32(255.0) * std), np.asarray(mean, dtype=np.float32) / std


def normalize(images, mean: Sequence[float], std: Sequence[float]):
    """uint8 (N, H, W, 3) or (H, W, 3) numpy/torch -> float32 torch, channels first (training)."""
    import torch

    tensor = torch.as_tensor(images)
    batched = tensor.ndim == 4
    if not batched:
        tensor = tensor.unsqueeze(0)
    # Contiguous before the float conversion, then one fused multiply-add per value:
    # several times faster than separate steps on strided memory, and the data
    # loader's hottest line.
    tensor = tensor.permute(0, 3, 1, 2).contiguous().float()
    scale, shift = (torch.from_numpy(values).view(1, 3, 1, 1) for values in normalization(mean, std))
    tensor = tensor.mul_(scale).sub_(shift)
    return tensor if batched else tensor[0]


def normalize_array(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 (N, H, W, 3) or (H, W, 3) -> float32 numpy, channels first: `normalize` without torch (inference)."""
    scale, shift = normalization(mean, std)
    channels_first = np.ascontiguousarray(np.moveaxis(images, -1, -3), dtype=np.float32)
    channels_first *= scale[:, None, None]
    channels_first -= shift[:, None, None]
    return channels_first
