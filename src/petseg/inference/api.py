"""`remove_background`: the one library call behind the CLI, the web service and Python users."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from PIL import Image

from petseg.data.decode import DEFAULT_MAX_PIXELS
from petseg.inference.compose import check_mode, check_trimap_classes, compose, fit_background, parse_color, soft_alpha
from petseg.inference.refine import refine_alpha
from petseg.inference.segmenter import PhotoLike, Prediction, Segmenter, as_photo, encode
from petseg.errors import PetsegError


@dataclass(frozen=True)
class CutoutOptions:
    """What a cutout produces. `background` is an RGB photo for mode "color" (any size)."""

    mode: str = "rgba"
    bg: str | None = None
    background: Image.Image | None = None
    refine: bool = False

    def __post_init__(self):
        check_mode(self.mode)
        if (self.bg is not None or self.background is not None) and self.mode != "color":
            raise PetsegError(f"--bg/--bg-image: a background needs --mode color, got --mode {self.mode}")
        if self.bg is not None and self.background is not None:
            raise PetsegError("--bg and --bg-image: give one background, not both")
        if self.bg is not None:
            parse_color(self.bg)

    @property
    def image_format(self) -> str:
        """Composites are photos (JPEG); everything else needs lossless PNG."""
        return "jpg" if self.mode == "color" else "png"


def render_cutout(photo: np.ndarray, prediction: Prediction, options: CutoutOptions) -> Image.Image:
    """The output image for one photo and its prediction, at the photo's size."""
    if options.mode == "labels":
        return compose(photo, "labels", labels=prediction.labels())
    if options.refine:
        alpha = refine_alpha(photo, soft_alpha(prediction.crop()))
    else:
        alpha = prediction.alpha()
    background = None
    if options.background is not None:
        background = fit_background(options.background, photo.shape[0], photo.shape[1])
    return compose(photo, options.mode, alpha=alpha, bg=options.bg, bg_image=background)


@functools.lru_cache(maxsize=1)
def default_segmenter() -> Segmenter:
    """The bundled model, loaded once per process."""
    return Segmenter.load()


def remove_background(
    image: PhotoLike,
    *,
    segmenter: Segmenter | None = None,
    mode: str = "rgba",
    bg: str | None = None,
    bg_image: PhotoLike | None = None,
    refine: bool = False,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
):
    """Cut the pet out of one photo, at its original size and upright orientation.

    Returns the type it was given: PIL image -> PIL image, ndarray -> ndarray, bytes ->
    encoded bytes (PNG; JPEG for mode="color"). A path or file object gives a PIL image.
    mode: "rgba" (soft alpha), "mask" (alpha as gray), "labels" (trimap values 1 pet,
    2 background, 3 border), "color" (composited on `bg` colour or `bg_image`).
    """
    background = None
    if bg_image is not None:
        background = Image.fromarray(as_photo(bg_image, max_pixels=max_pixels))
    options = CutoutOptions(mode=mode, bg=bg, background=background, refine=refine)
    photo = as_photo(image, max_pixels=max_pixels)
    segmenter = segmenter or default_segmenter()
    check_trimap_classes(segmenter.config.labels)
    [prediction] = segmenter.predict_batch([photo])
    result = render_cutout(photo, prediction, options)
    if isinstance(image, bytes):
        return encode(result, options.image_format)
    if isinstance(image, np.ndarray):
        return np.asarray(result)
    return result
