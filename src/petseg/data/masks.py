"""Dilations and erosions of boolean masks (squares, or diamonds without corners), by shifted ORs.

For the small radii matting and the toy trimaps use (a few pixels) this is several
times faster than a box filter over the whole image, and exact: no float threshold.
"""

from __future__ import annotations

import numpy as np


def grow_by_one(mask: np.ndarray, *, corners: bool = True) -> np.ndarray:
    """Pixels within a 3x3 square of a True pixel of a 2-D mask (corners=False: within
    one step up, down, left or right)."""
    grown = mask.copy()
    grown[1:] |= mask[:-1]
    grown[:-1] |= mask[1:]
    source = grown.copy() if corners else mask  # the rows already grown reach the corners
    grown[:, 1:] |= source[:, :-1]
    grown[:, :-1] |= source[:, 1:]
    return grown


def dilate(mask: np.ndarray, radius: int, *, corners: bool = True) -> np.ndarray:
    """Pixels within a (2r+1) square of a True pixel (corners=False: within r steps up, down, left or right)."""
    for _ in range(radius):
        mask = grow_by_one(mask, corners=corners)
    return mask


def erode(mask: np.ndarray, radius: int, *, corners: bool = True) -> np.ndarray:
    """Pixels whose whole neighbourhood (as for dilate) is True; beyond the image counts as True."""
    return ~dilate(~mask, radius, corners=corners)


def edge_band(inside: np.ndarray, radius: int) -> np.ndarray:
    """Pixels within a (2r+1) square of both an inside and an outside pixel."""
    return dilate(inside, radius) & dilate(~inside, radius)
