"""Copy-paste: a pet, cut out by its trimap, on a background from another photo.

The sample has three pets in the same homes; a model can learn the rooms instead of the
animals. Pasting each pet onto a pet-free piece of another training photo breaks that
link. The background is the largest square of the donor photo that lies outside its
pet's bounding box (letterbox padding excluded), so it holds only background pixels;
it is scaled up to the input size. Pet and border pixels travel with their labels (the
border band keeps its own mixed pixels: it is the annotators' "unknown" anyway); every
other pixel becomes background, letterbox padding included, since the new background
fills the whole square.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from petseg.data.labels import BACKGROUND, BORDER, IGNORE_INDEX, PET

# A background piece smaller than this share of the side is too blurry once scaled up.
MIN_BACKGROUND_SIDE = 1 / 6


def _span(flags: np.ndarray) -> tuple[int, int]:
    """(first, last + 1) of the True entries."""
    where = np.flatnonzero(flags)
    return int(where[0]), int(where[-1]) + 1


def pet_free_square(mask: np.ndarray) -> tuple[int, int, int] | None:
    """(top, left, side) of the largest square holding background pixels only, or None.

    Looked for beside the pet's bounding box, inside the labelled (non-padding) area.
    """
    known = mask != IGNORE_INDEX
    if not known.any():
        return None
    top, bottom = _span(known.any(axis=1))
    left, right = _span(known.any(axis=0))
    pet = (mask == PET) | (mask == BORDER)
    if not pet.any():
        pet_top = pet_bottom = top
        pet_left = pet_right = left
    else:
        pet_top, pet_bottom = _span(pet.any(axis=1))
        pet_left, pet_right = _span(pet.any(axis=0))
    # The four strips around the pet's box: (top, left, height, width).
    strips = [
        (top, left, pet_top - top, right - left),
        (pet_bottom, left, bottom - pet_bottom, right - left),
        (top, left, bottom - top, pet_left - left),
        (top, pet_right, bottom - top, right - pet_right),
    ]
    best = max(strips, key=lambda strip: min(strip[2], strip[3]))
    side = min(best[2], best[3])
    if side < max(1, round(mask.shape[0] * MIN_BACKGROUND_SIDE)):
        return None
    return best[0] + (best[2] - side) // 2, best[1] + (best[3] - side) // 2, side


def paste_on_background(image: np.ndarray, mask: np.ndarray, donor_image: np.ndarray,
                        donor_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pet of (image, mask) on the donor's pet-free background; unchanged when the donor has none.

    All four are letterboxed squares of one size: images (S, S, 3) uint8, masks (S, S) uint8.
    """
    square = pet_free_square(donor_mask)
    pet = (mask == PET) | (mask == BORDER)
    if square is None or not pet.any():
        return image, mask
    top, left, side = square
    size = mask.shape[0]
    piece = np.ascontiguousarray(donor_image[top : top + side, left : left + side])
    background = np.asarray(Image.fromarray(piece).resize((size, size), Image.BILINEAR))
    pasted_image = np.where(pet[..., None], image, background)
    pasted_mask = np.where(pet, mask, np.uint8(BACKGROUND)).astype(np.uint8)
    return pasted_image, pasted_mask
