"""Decode images and trimaps by content, never by file extension.

The real Oxford-IIIT Pet set has a GIF and an RGBA PNG named `.jpg` and a dozen
corrupt JPEGs; users upload CMYK, 16-bit, palette and EXIF-rotated photos. Every
image leaves here as an upright RGB uint8 array, or as an ImageError whose message
names the file and the reason.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from petseg.data.labels import TRIMAP_OFFSET
from petseg.errors import ImageError, LabelError, NotAnImageError
from petseg.limits import DEFAULT_MAX_PIXELS  # noqa: F401  (re-exported: decoding is where it applies)

ImageSource = Union[str, Path, bytes, BinaryIO]


# Our own limit replaces Pillow's global bomb check, which would warn or fail at a
# fixed size whatever the caller asked for.
Image.MAX_IMAGE_PIXELS = None

_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


def source_name(source: ImageSource) -> str:
    """How a source is named in messages: its path, or a stand-in for in-memory data."""
    if isinstance(source, (str, Path)):
        return str(source)
    return getattr(source, "name", None) or "<bytes>"


def open_image(source: ImageSource, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open and fully decode an image, checking its pixel count before decoding."""
    name = source_name(source)
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    try:
        image = Image.open(source)
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{name}: is a directory, not an image") from None
    except UnidentifiedImageError:
        raise NotAnImageError(f"{name}: not an image (unrecognised or empty file)") from None
    except _DECODE_ERRORS as error:
        raise ImageError(f"{name}: cannot read image ({error})") from None
    width, height = image.size
    if max_pixels is not None and width * height > max_pixels:
        raise ImageError(
            f"{name}: {width}x{height} is {width * height / 1e6:.0f} megapixels, "
            f"over the limit of {max_pixels / 1e6:.0f} (raise it with --max-pixels)"
        )
    try:
        image.load()
    except _DECODE_ERRORS as error:
        raise ImageError(f"{name}: corrupt or truncated {image.format or 'image'} ({error})") from None
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB. 16-bit and float images are scaled, not clipped."""
    if image.mode == "RGB":
        return image  # convert() would copy: 200 MB for a 50-megapixel photo
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        gray = np.clip(values / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


def load_rgb(source: ImageSource, *, max_pixels: int | None = DEFAULT_MAX_PIXELS, exif: bool = True) -> np.ndarray:
    """Decode a photo to an upright (H, W, 3) uint8 array."""
    image = open_image(source, max_pixels=max_pixels)
    if exif:
        try:
            ImageOps.exif_transpose(image, in_place=True)  # a copy would cost one more full image
        except _DECODE_ERRORS:
            pass  # a broken EXIF block should not cost the user the photo
    return np.asarray(to_rgb(image))


def load_labels(path: str | Path) -> np.ndarray:
    """Decode an Oxford trimap (1 pet, 2 background, 3 border) to class indices 0..2."""
    image = open_image(path, max_pixels=None)
    if image.mode not in ("L", "P", "I", "I;16"):
        raise LabelError(f"{path}: trimap must be single-channel, got mode {image.mode}")
    trimap = np.asarray(image)
    bad = np.setdiff1d(np.unique(trimap), (1, 2, 3))
    if bad.size:
        raise LabelError(f"{path}: trimap values must be 1, 2 or 3, found {bad[:5].tolist()}")
    return (trimap - TRIMAP_OFFSET).astype(np.uint8)


def sniff_format(path: str | Path) -> str | None:
    """The format Pillow sees in a file's content (JPEG, PNG, GIF...), or None."""
    try:
        with Image.open(path) as image:
            return image.format
    except (UnidentifiedImageError, *_DECODE_ERRORS):
        return None
