"""Training augmentation on letterboxed uint8 squares.

Geometric changes (flip, scale/crop) move image and mask together, with the mask
resized nearest-neighbour and padded with IGNORE_INDEX; colour changes touch the
image only. The reference notebook used a random horizontal flip alone, which
stays the default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image

from petseg.data.labels import IGNORE_INDEX
from petseg.errors import PetsegError


@dataclass(frozen=True)
class Augment:
    """hflip: flip left-right half the time. scale: (min, max) zoom, then crop or pad
    back to the input size. color_jitter: J varies brightness, contrast and saturation
    by a factor in [1 - J, 1 + J]."""

    hflip: bool = True
    scale: tuple[float, float] | None = None
    color_jitter: float = 0.0

    def __post_init__(self):
        if self.scale is not None:
            if len(self.scale) != 2 or not 0 < self.scale[0] <= self.scale[1]:
                raise PetsegError(f"augment scale must be (min, max) with 0 < min <= max, got {self.scale}")
            object.__setattr__(self, "scale", (float(self.scale[0]), float(self.scale[1])))
        if not 0 <= self.color_jitter < 1:
            raise PetsegError(f"augment color_jitter must be in [0, 1), got {self.color_jitter}")

    def __call__(
        self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, fill: Sequence[int] | int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """(S, S, 3) uint8 image and (S, S) uint8 mask -> the same shapes, augmented."""
        if self.hflip and rng.random() < 0.5:
            image, mask = image[:, ::-1], mask[:, ::-1]
        if self.scale is not None:
            image, mask = _scale_crop(image, mask, rng.uniform(*self.scale), rng, fill)
        if self.color_jitter > 0:
            image = _jitter_colors(image, self.color_jitter, rng)
        return np.ascontiguousarray(image), np.ascontiguousarray(mask)


def _scale_crop(image, mask, factor: float, rng: np.random.Generator, fill):
    """Zoom both by `factor`; crop a random window when larger, pad at a random place when smaller."""
    size = mask.shape[0]
    scaled = max(1, round(size * factor))
    if scaled == size:
        return image, mask
    image = np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((scaled, scaled), Image.BILINEAR))
    mask = np.asarray(Image.fromarray(np.ascontiguousarray(mask)).resize((scaled, scaled), Image.NEAREST))
    offset_y, offset_x = rng.integers(0, abs(scaled - size) + 1, size=2)
    if scaled > size:
        window = (slice(offset_y, offset_y + size), slice(offset_x, offset_x + size))
        return image[window], mask[window]
    image_canvas = np.empty((size, size, 3), dtype=np.uint8)
    image_canvas[...] = np.asarray(fill, dtype=np.uint8)
    mask_canvas = np.full((size, size), IGNORE_INDEX, dtype=np.uint8)
    inside = (slice(offset_y, offset_y + scaled), slice(offset_x, offset_x + scaled))
    image_canvas[inside], mask_canvas[inside] = image, mask
    return image_canvas, mask_canvas


def _jitter_colors(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    brightness, contrast, saturation = rng.uniform(1 - strength, 1 + strength, size=3)
    pixels = image.astype(np.float32) * brightness
    gray = pixels @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    pixels = gray[..., None] + (pixels - gray[..., None]) * saturation
    pixels = gray.mean() + (pixels - gray.mean()) * contrast
    return np.clip(pixels + 0.5, 0, 255).astype(np.uint8)
