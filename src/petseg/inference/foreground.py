"""Foreground colours at a matte's edge: blur fusion, evaluated only where it is needed.

Blur fusion (Forte and Pitie, "Approximate fast foreground colour estimation", ICIP 2021)
estimates the pet's own colour under a partly transparent pixel from box-blurred
foreground and background colours, in two passes: a large radius, then a small one.
A cutout needs it only at its edge pixels, a few percent of the photo, so `fusion_means_at`
computes both passes there alone (and, for the first pass, at the pixels the second
pass's windows reach), never over whole images:
- the second pass's small windows are gathered pixel by pixel where that is less work
  than filtering the image (it is on the usual photo, whose edge is a few thousand
  pixels), and filtered otherwise: the same numbers either way;
- the first pass's windows are some 180 pixels wide, so their means are smooth: they are
  taken on a grid a few times coarser and interpolated, which moves the colours by a few
  levels in 255 at most (tests/test_matting.py states the tolerance).
"""

from __future__ import annotations

import numpy as np

from petseg.data.masks import dilate

# Blur-fusion radii, as fractions of the image's long side (90 and 6 px at 1000 px).
RADII = (0.09, 0.006)
# The large pass runs on a grid coarse enough that its radius there is about this many cells.
COARSE_RADIUS = 8
# Keeps the blurred colour ratios finite where a window is all pet or all background.
EPSILON = 1e-5


def radii(shape: tuple[int, ...]) -> list[int]:
    return [max(1, round(fraction * max(shape[:2]))) for fraction in RADII]


def box_mean(values: np.ndarray, radius: int) -> np.ndarray:
    """float32 mean over a (2r+1)^2 window along the first two axes, edges repeated (SciPy's filter)."""
    from scipy.ndimage import uniform_filter

    size = (2 * radius + 1, 2 * radius + 1) + (1,) * (values.ndim - 2)
    return uniform_filter(values.astype(np.float32, copy=False), size, mode="nearest")


def coarse_box_mean_at(image: np.ndarray, alpha: np.ndarray, radius: int, rows: np.ndarray,
                       columns: np.ndarray) -> np.ndarray:
    """About the box means of alpha, image * alpha and image * (1 - alpha) at the given pixels: (n, 7).

    The box means are taken on a grid `factor` times coarser, every factor-th pixel of
    the image, and read back at the pixels by bilinear interpolation.
    """
    factor = max(1, radius // COARSE_RADIUS)
    start = factor // 2
    grid_alpha = alpha[start::factor, start::factor, None].astype(np.float32)
    grid_image = image[start::factor, start::factor].astype(np.float32)
    grid = np.concatenate([grid_alpha, grid_image * grid_alpha, grid_image * (1 - grid_alpha)], axis=2)
    coarse = box_mean(grid, max(1, round((2 * radius + 1) / factor / 2 - 0.5)))
    # Each pixel's centre in the coarse grid's coordinates, and its four nearest cells.
    y = np.clip((rows - start) / factor, 0, coarse.shape[0] - 1)
    x = np.clip((columns - start) / factor, 0, coarse.shape[1] - 1)
    top, left = y.astype(np.intp), x.astype(np.intp)
    bottom, right = np.minimum(top + 1, coarse.shape[0] - 1), np.minimum(left + 1, coarse.shape[1] - 1)
    down, across = (y - top)[:, None], (x - left)[:, None]
    upper = coarse[top, left] * (1 - across) + coarse[top, right] * across
    lower = coarse[bottom, left] * (1 - across) + coarse[bottom, right] * across
    return (upper * (1 - down) + lower * down).astype(np.float32)


def window_pixels(rows: np.ndarray, columns: np.ndarray, radius: int, shape: tuple[int, int]) -> np.ndarray:
    """Flat indices (n, (2r+1)^2) of each pixel's window, clamped at the image's edges (edges repeated)."""
    offsets = np.arange(-radius, radius + 1)
    window_rows = np.clip(rows[:, None] + offsets, 0, shape[0] - 1)
    window_columns = np.clip(columns[:, None] + offsets, 0, shape[1] - 1)
    return (window_rows[:, :, None] * shape[1] + window_columns[:, None, :]).reshape(len(rows), -1)


def window_means_at(values: np.ndarray, near: np.ndarray, wanted: np.ndarray, radius: int) -> np.ndarray:
    """box_mean of an image at its wanted pixels: (n, c), from its `values` (m, c) at the flat
    indices `near`, which hold every pixel within `radius` of a wanted one."""
    height, width = wanted.shape
    rows, columns = np.nonzero(wanted)
    if rows.size * (2 * radius + 1) ** 2 <= height * width:
        compact = np.full(height * width, -1, np.intp)  # a near pixel's row in `values`
        compact[near] = np.arange(near.size)
        windows = np.take(compact, window_pixels(rows, columns, radius, (height, width)).T)  # sums run over rows
        return np.take(values, windows, axis=0).mean(axis=0)
    full = np.zeros((height * width, values.shape[1]), np.float32)  # pixels that are not near are never read
    full[near] = values
    return box_mean(full.reshape(height, width, -1), radius)[wanted]


def fuse(image, alpha, blurred_alpha, weighted_foreground, weighted_background):
    """One blur-fusion step from the box means of alpha, F*alpha and B*(1-alpha): (foreground, background)."""
    foreground = weighted_foreground / (blurred_alpha + EPSILON)
    background = weighted_background / (1 - blurred_alpha + EPSILON)
    estimate = foreground + alpha * (image - alpha * foreground - (1 - alpha) * background)
    return np.clip(estimate, 0.0, 1.0), background


def fusion_means_at(image: np.ndarray, alpha: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Blur fusion's last box means at the wanted pixels: (n, 7) of alpha, F*alpha and B*(1-alpha).

    image (h, w, 3) and alpha (h, w) in 0..1. `fuse` turns them into the foreground colour
    of any pixel they stand for: its own colour and alpha, these smooth means.
    """
    large, small = radii(alpha.shape)
    # The second pass reads every pixel within `small` of a wanted pixel: work on those alone.
    near = np.flatnonzero(dilate(wanted, small))
    near_image = np.take(image.reshape(-1, 3), near, axis=0).astype(np.float32)
    near_alpha = np.take(alpha, near).astype(np.float32)[:, None]
    # The first pass's foreground and background matter where alpha < 1 (where alpha is 1
    # its foreground is the photo itself, and its background is weighted by 0).
    weighted_foreground, weighted_background = near_image * near_alpha, np.zeros_like(near_image)
    reached = near_alpha[:, 0] < 1
    if reached.any():
        means = coarse_box_mean_at(image, alpha, large, *np.divmod(near[reached], alpha.shape[1]))
        first_foreground, first_background = fuse_means(near_image[reached], near_alpha[reached], means)
        weighted_foreground[reached] = first_foreground * near_alpha[reached]
        weighted_background[reached] = first_background * (1 - near_alpha[reached])
    return window_means_at(np.concatenate([near_alpha, weighted_foreground, weighted_background], axis=1),
                           near, wanted, small)


def fuse_means(image: np.ndarray, alpha: np.ndarray, means: np.ndarray):
    """`fuse` for pixels (n, 3) and their alpha (n, 1), from their (n, 7) box means."""
    return fuse(image, alpha, means[:, :1], means[:, 1:4], means[:, 4:])


def foreground_at(image: np.ndarray, alpha: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Blur fusion's foreground colours (n, 3) at the pixels where `wanted` (h, w) is True.

    image (h, w, 3) and alpha (h, w) in 0..1: blur fusion over the whole image, read at
    those pixels (tests/test_matting.py checks, within the coarse first pass's tolerance).
    """
    pixels, pixel_alpha = image[wanted].astype(np.float32), alpha[wanted].astype(np.float32)[:, None]
    return fuse_means(pixels, pixel_alpha, fusion_means_at(image, alpha, wanted))[0]
