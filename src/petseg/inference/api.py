"""`remove_background`: the one library call behind the CLI, the web service and Python users."""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

from petseg.data.decode import DEFAULT_MAX_PIXELS
from petseg.errors import PetsegError
from petseg.inference.render import CutoutOptions, default_mode, encode, predict_for_cutout, render_cutout
from petseg.inference.segmenter import PhotoLike, Segmenter, as_photo


# What a segmenter (or a wrapper around one) must offer for cutouts.
CUTOUT_METHODS = ("predict_batch", "flips_for")


@functools.lru_cache(maxsize=1)
def default_segmenter() -> Segmenter:
    """The bundled model, loaded once per process."""
    return Segmenter.load()


def remove_background(
    image: PhotoLike,
    *,
    segmenter: Segmenter | None = None,
    mode: str | None = None,
    bg: str | None = None,
    bg_image: PhotoLike | None = None,
    alpha: str = "matting",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
):
    """Cut the pet out of one photo, at its original size and upright orientation.

    Returns the type it was given: PIL image -> PIL image, ndarray -> ndarray, bytes ->
    encoded bytes (PNG; JPEG for mode="color"). A path or file object gives a PIL image.
    mode: "rgba" (photo + alpha), "mask" (alpha as gray), "labels" (trimap values 1 pet,
    2 background, 3 border), "color" (composited on `bg` colour or `bg_image`); by
    default "color" when a background is given, else "rgba".
    alpha: "matting" (matted edges, edge colours freed of the old background), "hard"
    (label mask) or "soft" (P(pet) + P(border) / 2). Matting averages the photo's and its
    mirror's predictions unless the segmenter was loaded with flip_tta=False.
    """
    background = None
    if bg_image is not None:
        background = Image.fromarray(as_photo(bg_image, max_pixels=max_pixels))
    mode = default_mode(mode, bg is not None or background is not None)
    options = CutoutOptions(mode=mode, bg=bg, background=background, alpha=alpha)
    photo = as_photo(image, max_pixels=max_pixels)
    if segmenter is not None and not all(callable(getattr(segmenter, method, None)) for method in CUTOUT_METHODS):
        # duck-typed: wrappers welcome
        raise PetsegError(f"segmenter must be a petseg Segmenter (Segmenter.load(...)), got {type(segmenter).__name__}")
    segmenter = segmenter or default_segmenter()
    [prediction] = predict_for_cutout(segmenter, [photo], options)
    result = render_cutout(photo, prediction, options)
    if isinstance(image, bytes):
        return encode(result, options.image_format)
    if isinstance(image, np.ndarray):
        return np.asarray(result)
    return result
