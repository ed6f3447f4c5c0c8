"""Pet recolouring: the pet's fur turned white, black or grey, its background left alone.

The sample's breeds are brown, tabby-spotted and tan short-haired pets. A white Great
Pyrenees or a black cat shows the model a fur colour it never saw on a pet, and
image-wide colour jitter changes the room along with the fur, so colour keeps telling
pet from background. This changes the pet and border pixels only: their colour is
pulled towards grey, then lightened or darkened, keeping the fur's texture (its
brightness pattern).
"""

from __future__ import annotations

import numpy as np

from petseg.data.labels import BORDER, PET

KINDS = ("white", "black", "grey")
# How far the fur moves towards white or black: drawn in this range for each image.
STRENGTH = (0.4, 0.85)
# ITU-R BT.601 luma, as Pillow's "L" conversion weighs the channels.
LUMA = np.array([0.299, 0.587, 0.114], np.float32)
# The share of the fur's own colour kept: white and black fur are nearly grey.
KEPT_COLOUR = {"white": 0.2, "black": 0.3, "grey": 0.0}


def recolor_pet(image: np.ndarray, mask: np.ndarray, kind: str, strength: float) -> np.ndarray:
    """(S, S, 3) uint8 image with its pet (the mask's pet and border pixels) recoloured.

    kind: "white" (lightened by `strength`), "black" (darkened by it) or "grey" (colour
    removed, brightness kept).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    pet = (mask == PET) | (mask == BORDER)
    if not pet.any():
        return image
    pixels = image[pet].astype(np.float32)
    grey = (pixels @ LUMA)[:, None]
    fur = grey + KEPT_COLOUR[kind] * (pixels - grey)
    if kind == "white":
        fur = fur + (255.0 - fur) * strength
    elif kind == "black":
        fur = fur * (1.0 - strength)
    result = image.copy()
    result[pet] = np.clip(fur + 0.5, 0, 255).astype(np.uint8)
    return result


def random_recolor(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`recolor_pet` with a kind and strength drawn from torch's generator (seeded like the rest)."""
    import torch

    kind = KINDS[int(torch.randint(len(KINDS), ()).item())]
    strength = torch.empty(()).uniform_(*STRENGTH).item()
    return recolor_pet(image, mask, kind, strength)
