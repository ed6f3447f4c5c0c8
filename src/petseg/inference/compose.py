"""From class probabilities to what a user sees: soft alpha, label maps, composites.

Full-resolution work stays in uint8 and in Pillow's C code: a 50-megapixel photo
would need 600 MB for three float32 probability maps, while its alpha needs 50 MB.
Soft alpha is linear in the probabilities, so it is computed at the model's size and
upsampled once; bilinear upsampling commutes with that linear map.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image, ImageColor, ImageOps

from petseg.data.labels import BACKGROUND, BORDER, CLASS_NAMES, PET, TRIMAP_OFFSET
from petseg.errors import PetsegError, clipped, quoted

MODES = ("rgba", "mask", "labels", "color")
# How the alpha is made: matted edges (inference/matting.py), the label mask, or P(pet) + P(border) / 2.
ALPHAS = ("matting", "hard", "soft")

# The border class is the trimap's "not classified" band around the pet: half-opaque.
BORDER_ALPHA = 0.5

DEFAULT_BACKGROUND = "#ffffff"
# Full-size label maps are made this many pixels at a time (see upsample_labels).
STRIP_PIXELS = 1 << 20


def check_trimap_classes(labels) -> None:
    """Trimap scores compare classes by position: refuse a model whose classes are not the trimap's.

    Cutouts work with any model that names a pet and a background class (`PetClasses`);
    scoring against Oxford trimaps needs pet, background and border, in that order.
    """
    if tuple(labels) != CLASS_NAMES:
        shown = ", ".join(str(label)[:30] for label in list(labels)[:8]) + (", ..." if len(labels) > 8 else "")
        raise PetsegError(
            f"the model's classes ({shown}) are not {', '.join(CLASS_NAMES)}: "
            "trimap scores need a model of those three classes, in that order"
        )


@dataclass(frozen=True)
class PetClasses:
    """Which of a model's output channels are the pet, the background and the border band.

    Read from the labels stored with the model: those named "pet" and "background" (and
    "border" if there is one), or, for unnamed classes ("class_0", ... as create_model
    names them), petseg's label order (METRICS.md), so a two-class model is pet and
    background. Named classes without a pet and a background are refused.
    """

    pet: int = PET
    background: int = BACKGROUND
    border: int | None = BORDER

    @classmethod
    def from_labels(cls, labels: Sequence[str]) -> "PetClasses":
        if len(labels) < 2:
            raise PetsegError(f"a model with {len(labels)} class cannot cut out: it needs pet and background classes")
        index = {name: position for position, name in enumerate(labels)}
        if "pet" in index and "background" in index:
            return cls(index["pet"], index["background"], index.get("border"))
        if all(re.fullmatch(r"class_\d+", str(name)) for name in labels):
            return cls(PET, BACKGROUND, BORDER if len(labels) > BORDER else None)
        shown = ", ".join(str(label)[:30] for label in list(labels)[:8]) + (", ..." if len(labels) > 8 else "")
        raise PetsegError(f"the model's classes ({shown}) name no 'pet' and 'background': a cutout needs both")

    @property
    def foreground(self) -> tuple[int, ...]:
        """The classes a hard mask keeps: pet and border (the border band belongs to the pet's outline)."""
        return (self.pet,) if self.border is None else (self.pet, self.border)


THREE_CLASSES = PetClasses()


def soft_alpha(probabilities: np.ndarray, classes: PetClasses = THREE_CLASSES) -> np.ndarray:
    """(C, h, w) probabilities -> (h, w) float32 alpha in [0, 1]: P(pet) + half P(border)."""
    alpha = probabilities[classes.pet]
    if classes.border is not None:
        alpha = alpha + BORDER_ALPHA * probabilities[classes.border]
    return np.clip(alpha, 0.0, 1.0).astype(np.float32, copy=False)


def upsample(channel: np.ndarray, height: int, width: int) -> np.ndarray:
    """(h, w) float32 -> (height, width) float32, bilinear.

    Pillow's triangle filter equals PyTorch's bilinear (align_corners=False) when
    enlarging, and it antialiases when shrinking a map onto a tiny photo.
    """
    image = Image.fromarray(np.ascontiguousarray(channel, dtype=np.float32), mode="F")
    return np.asarray(image.resize((width, height), Image.BILINEAR))


def alpha_to_uint8(alpha: np.ndarray) -> np.ndarray:
    return (np.clip(alpha, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def upsample_alpha(alpha: np.ndarray, height: int, width: int) -> np.ndarray:
    """(h, w) float alpha -> (height, width) uint8, resized in uint8 to keep memory small."""
    small = Image.fromarray(alpha_to_uint8(alpha), mode="L")
    return np.asarray(small.resize((width, height), Image.BILINEAR))


def upsample_labels(probabilities: np.ndarray, height: int, width: int, values: Sequence[int] | None = None
                    ) -> np.ndarray:
    """(C, h, w) probabilities -> (height, width) uint8 argmax of the upsampled maps, or values[argmax].

    Made a strip of rows at a time: a full-size float map is 4 bytes a pixel and class,
    and a 1-bit 100-megapixel PNG took a hard-alpha cutout to 2.5 GB. Each strip resizes
    its own rows of the whole map (Pillow's `box`): the same sampling as one full-size
    resize, equal to it within float32 rounding (1e-5).
    """
    count, map_height, map_width = probabilities.shape
    channels = [Image.fromarray(np.ascontiguousarray(channel, dtype=np.float32), mode="F") for channel in probabilities]
    table = np.arange(count, dtype=np.uint8) if values is None else np.asarray(values, np.uint8)
    result = np.empty((height, width), np.uint8)
    rows = max(1, STRIP_PIXELS // width)
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        box = (0, top * map_height / height, map_width, bottom * map_height / height)
        maps = [np.asarray(channel.resize((width, bottom - top), Image.BILINEAR, box=box)) for channel in channels]
        result[top:bottom] = table[np.argmax(maps, axis=0)]
    return result


def labels_to_trimap(labels: np.ndarray) -> np.ndarray:
    """Class indices 0..2 -> the dataset's own encoding 1..3 (METRICS.md)."""
    return (labels + TRIMAP_OFFSET).astype(np.uint8)


def parse_color(text: str) -> tuple[int, int, int]:
    if not isinstance(text, str):
        raise PetsegError(f"background colour must be a text such as #rrggbb or white, got {quoted(text)}")
    try:
        channels = ImageColor.getrgb(text)[:3]
    except ValueError:
        channels = None
    # Pillow passes numbers through unclamped: "rgb(256,0,0)" would be (256, 0, 0).
    if channels is None or not all(0 <= channel <= 255 for channel in channels):
        raise PetsegError(f"background colour {clipped(text)!r} is not a colour (use #rrggbb or a name like white)")
    return channels


def fit_background(background: Image.Image, height: int, width: int) -> Image.Image:
    """A background photo scaled to cover height x width and centre-cropped (no distortion)."""
    if background.size == (width, height):
        return background
    return ImageOps.fit(background, (width, height), Image.BILINEAR)


def check_alpha(alpha: str) -> None:
    if alpha not in ALPHAS:
        raise PetsegError(f"alpha {quoted(alpha)} is not one of {', '.join(ALPHAS)}")


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise PetsegError(f"cutout mode {quoted(mode)} is not one of {', '.join(MODES)}")


def rgba_cutout(photo: np.ndarray, alpha: np.ndarray) -> Image.Image:
    """The photo under its alpha; fully transparent pixels are transparent black (0, 0, 0, 0).

    Their colour is never seen, and as zeros it costs next to nothing in a PNG: a cutout
    file is less than half the size and encodes twice as fast (rembg does the same).
    """
    rgba = np.empty(photo.shape[:2] + (4,), np.uint8)
    # One pass, no temporary copies of the photo (Pillow's paste under a mask needed two,
    # 230 MB more at 50 megapixels).
    np.multiply(photo, (alpha > 0)[..., None], out=rgba[..., :3], casting="unsafe")
    rgba[..., 3] = alpha
    return Image.fromarray(rgba, mode="RGBA")


def compose(
    photo: np.ndarray,
    mode: str,
    *,
    alpha: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    bg: str | None = None,
    bg_image: Image.Image | None = None,
) -> Image.Image:
    """Build the output image of one cutout mode at the photo's resolution.

    photo (H, W, 3) uint8; alpha (H, W) uint8 for rgba/mask/color; labels (H, W) class
    indices for "labels"; colour mode uses bg_image (already photo-sized) or the bg colour.
    """
    check_mode(mode)
    if mode == "labels":
        return Image.fromarray(labels_to_trimap(labels), mode="L")
    mask = Image.fromarray(alpha, mode="L")
    if mode == "mask":
        return mask
    if mode == "rgba":
        return rgba_cutout(photo, alpha)
    image = Image.fromarray(photo, mode="RGB")
    if bg_image is None:
        bg_image = Image.new("RGB", image.size, parse_color(bg or DEFAULT_BACKGROUND))
    return Image.composite(image, bg_image.convert("RGB"), mask)
