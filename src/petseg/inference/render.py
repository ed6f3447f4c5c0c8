"""The last steps of a cutout: options, the output image, and its encoded file.

CutoutOptions says what to produce; `render_cutout` turns a photo and its Prediction
into that image at the photo's size; `save_image` / `encode` write it as PNG (lossless,
for alpha and label maps) or JPEG (composites).
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image

from petseg.errors import PetsegError
from petseg.inference.compose import check_alpha, check_mode, compose, fit_background, parse_color
from petseg.inference.matting import Matte, matte
from petseg.inference.segmenter import Prediction

IMAGE_FORMATS = ("png", "jpg")
# zlib's run-length strategy suits cutouts (flat transparent areas, smooth alpha): on a
# 500x375 RGBA photo it encodes several times faster than Pillow's default level 6 and
# the file is within 1% of its size.
PNG_OPTIONS = {"compress_level": 1, "compress_type": zlib.Z_RLE}
JPEG_QUALITY = 95


@dataclass(frozen=True)
class CutoutOptions:
    """What a cutout produces. `background` is an RGB photo for mode "color" (any size).

    alpha: "matting" (matted edges, decontaminated edge colours), "hard" (the label mask:
    pet and border opaque) or "soft" (P(pet) + P(border) / 2).
    """

    mode: str = "rgba"
    bg: str | None = None
    background: Image.Image | None = None
    alpha: str = "matting"

    def __post_init__(self):
        check_mode(self.mode)
        check_alpha(self.alpha)
        if (self.bg is not None or self.background is not None) and self.mode != "color":
            raise PetsegError(f"a background colour or image needs cutout mode 'color', got {self.mode!r}")
        if self.bg is not None and self.background is not None:
            raise PetsegError("give one background, a colour or an image, not both")
        if self.bg is not None:
            parse_color(self.bg)

    @property
    def shaping_alpha(self) -> str | None:
        """The alpha kind that shapes the output; None for label maps, which show the labels alone."""
        return None if self.mode == "labels" else self.alpha

    @property
    def image_format(self) -> str:
        """Composites are photos (JPEG); everything else needs lossless PNG."""
        return "jpg" if self.mode == "color" else "png"


def default_mode(mode: str | None, has_background: bool) -> str:
    """The mode when none is given: a background colour or image asks for a composite."""
    if mode is not None:
        return mode
    return "color" if has_background else "rgba"


def predict_for_cutout(segmenter, photos: Sequence[np.ndarray], options: CutoutOptions) -> list[Prediction]:
    """The predictions cutouts with `options` are made from: averaged with the mirrored
    photo's where the segmenter's flip rule says so (by default for matting alone)."""
    return segmenter.predict_batch(photos, flip=segmenter.flips_for(options.shaping_alpha))


def cutout_alpha(photo: np.ndarray, prediction: Prediction, alpha: str, *, colours: bool = True) -> Matte:
    """The alpha (H, W) uint8 of one kind, and the colours to show under it.

    Only matting changes the colours (its edge pixels lose the old background's tint);
    colours=False skips that work when only the alpha is wanted.
    """
    check_alpha(alpha)
    if alpha == "matting":
        return matte(prediction.soft_alpha(), photo, foreground=colours)
    return Matte(prediction.hard_alpha() if alpha == "hard" else prediction.alpha(), photo)


def render_cutout(photo: np.ndarray, prediction: Prediction, options: CutoutOptions) -> Image.Image:
    """The output image for one photo and its prediction, at the photo's size."""
    if options.mode == "labels":
        return compose(photo, "labels", labels=prediction.labels())
    result = cutout_alpha(photo, prediction, options.alpha, colours=options.mode != "mask")
    background = None
    if options.background is not None:
        background = fit_background(options.background, photo.shape[0], photo.shape[1])
    return compose(result.foreground, options.mode, alpha=result.alpha, bg=options.bg, bg_image=background)


def save_image(image: Image.Image, file, image_format: str) -> None:
    """Write an output image to a path or binary file as "png" or "jpg"."""
    if image_format == "png":
        image.save(file, format="PNG", **PNG_OPTIONS)
    elif image_format == "jpg":
        image.save(file, format="JPEG", quality=JPEG_QUALITY)
    else:
        raise PetsegError(f"image format {image_format!r} is not one of {', '.join(IMAGE_FORMATS)}")


def encode(image: Image.Image, image_format: str) -> bytes:
    """PNG or JPEG bytes for an output image (see `save_image`)."""
    buffer = io.BytesIO()
    save_image(image, buffer, image_format)
    return buffer.getvalue()
