"""Edge refinement: snap the coarse, upsampled alpha to the photo's own edges.

The network sees the pet at 224 pixels, so its alpha is blurry at full resolution.
A guided filter (He, Sun and Tang, 2010) makes the alpha locally a linear function of
the photo's brightness, which transfers the photo's sharp edges into the alpha. The
"fast" variant (He and Sun, 2015) solves for the linear coefficients on a reduced
image and only applies them at full size, strip by strip, so a 50-megapixel photo
costs a few small arrays rather than a dozen full-size float maps.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

# Rows per full-resolution strip: bounds memory to a few float32 strips.
STRIP_ROWS = 512
# The coefficients are solved at most at this size (long side, pixels).
WORK_SIZE = 1024
# Luma weights (ITU-R BT.601), as Pillow's "L" conversion uses.
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def box_mean(values: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a (2r+1)^2 window, shrunk at the borders (running sums, O(pixels))."""

    def along(array: np.ndarray, axis: int) -> np.ndarray:
        size = array.shape[axis]
        sums = np.cumsum(array, axis=axis, dtype=np.float64)
        sums = np.concatenate([np.zeros_like(sums.take([0], axis=axis)), sums], axis=axis)
        index = np.arange(size)
        high, low = np.minimum(index + radius + 1, size), np.maximum(index - radius, 0)
        counts = (high - low).astype(np.float64)
        shape = [1] * array.ndim
        shape[axis] = size
        return (sums.take(high, axis=axis) - sums.take(low, axis=axis)) / counts.reshape(shape)

    return along(along(values, 0), 1).astype(np.float32)


def guided_filter_coefficients(guide: np.ndarray, source: np.ndarray, radius: int, eps: float):
    """Smoothed (a, b) such that a * guide + b is the filtered source."""
    mean_guide = box_mean(guide, radius)
    mean_source = box_mean(source, radius)
    covariance = box_mean(guide * source, radius) - mean_guide * mean_source
    variance = box_mean(guide * guide, radius) - mean_guide * mean_guide
    a = covariance / (variance + eps)
    b = mean_source - a * mean_guide
    return box_mean(a, radius), box_mean(b, radius)


def _upsample_rows(channel: np.ndarray, height: int, width: int, top: int, bottom: int) -> np.ndarray:
    """Rows top..bottom of `channel` bilinearly resized to height x width (same as resizing it all)."""
    rows, columns = channel.shape
    scale = rows / height
    image = Image.fromarray(channel, mode="F")
    box = (0.0, top * scale, float(columns), bottom * scale)
    return np.asarray(image.resize((width, bottom - top), Image.BILINEAR, box=box))


def refine_alpha(photo: np.ndarray, alpha: np.ndarray, *, radius: int | None = None, eps: float = 1e-4) -> np.ndarray:
    """Full-resolution alpha (H, W) uint8 from the photo (H, W, 3) uint8 and a coarse alpha (h, w) in [0, 1].

    radius (pixels of the reduced image) defaults to about two pixels of the coarse
    alpha: the width of the band the network could not resolve.
    """
    height, width = photo.shape[:2]
    scale = min(1.0, WORK_SIZE / max(height, width))
    work_height, work_width = max(1, round(height * scale)), max(1, round(width * scale))
    gray = Image.fromarray(photo, mode="RGB").convert("L").resize((work_width, work_height), Image.BILINEAR)
    guide = np.asarray(gray, dtype=np.float32) / 255.0
    source = np.asarray(
        Image.fromarray(alpha.astype(np.float32), mode="F").resize((work_width, work_height), Image.BILINEAR)
    )
    if radius is None:
        radius = max(2, round(2 * max(work_height, work_width) / max(alpha.shape)))
    a, b = guided_filter_coefficients(guide, source, radius, eps)

    refined = np.empty((height, width), np.uint8)
    for top in range(0, height, STRIP_ROWS):
        bottom = min(height, top + STRIP_ROWS)
        luma = photo[top:bottom].astype(np.float32) @ (LUMA / 255.0)
        strip = _upsample_rows(a, height, width, top, bottom) * luma + _upsample_rows(b, height, width, top, bottom)
        refined[top:bottom] = (np.clip(strip, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return refined
