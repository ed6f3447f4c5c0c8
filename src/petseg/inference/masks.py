"""Square dilations of boolean masks, by shifted ORs.

For the small radii matting uses (a few pixels) this is several times faster than a
box filter over the whole image, and exact: no float threshold.
"""

from __future__ import annotations

import numpy as np


def grow_by_one(mask: np.ndarray) -> np.ndarray:
    """Pixels within a 3x3 square of a True pixel of a 2-D mask."""
    grown = mask.copy()
    grown[1:] |= mask[:-1]
    grown[:-1] |= mask[1:]
    rows = grown.copy()
    grown[:, 1:] |= rows[:, :-1]
    grown[:, :-1] |= rows[:, 1:]
    return grown


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Pixels within a (2r+1) square of a True pixel."""
    for _ in range(radius):
        mask = grow_by_one(mask)
    return mask


def edge_band(inside: np.ndarray, radius: int) -> np.ndarray:
    """Pixels within a (2r+1) square of both an inside and an outside pixel."""
    return dilate(inside, radius) & dilate(~inside, radius)
