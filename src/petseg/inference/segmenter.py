"""Segmenter: photos in, class probabilities out, at each photo's own size.

Every front end (the cutout command, the web service, `remove_background`, evaluate)
goes through `Segmenter.predict_batch`: letterbox each photo into the model's square
with the mean colour as padding (as in training), run one batch on the backend, and
keep the model-size probabilities with the geometry that maps them back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Sequence, Union

import numpy as np
from PIL import Image

from petseg.data.decode import DEFAULT_MAX_PIXELS, check_pixels, load_rgb
from petseg.limits import MAX_BATCH_SIZE, check_threads, check_whole_number
from petseg.data.letterbox import Letterbox, mean_fill, normalize_array
from petseg.errors import TRAIN_INSTALL, ImageError, PetsegError, TrainInstallMissing, quoted
from petseg.inference.compose import THREE_CLASSES, PetClasses, soft_alpha, upsample, upsample_alpha, upsample_labels
from petseg.models.config import ModelConfig
from petseg.models.files import bundled_model_path, resolve_model_path

BACKENDS = ("torch", "onnx")
# How messages name a model that came from no file.
UNNAMED_MODEL = "the model"
DEFAULT_BATCH_SIZE = 8

PhotoLike = Union[np.ndarray, Image.Image, bytes, str, Path, BinaryIO]


def as_photo(image: PhotoLike, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Anything a user may hand us -> upright (H, W, 3) uint8. PIL images get their EXIF rotation.

    Accepts an ndarray ((H, W), (H, W, 3) or (H, W, 4) uint8), a PIL image, encoded
    bytes, a path or a binary file object.
    """
    if isinstance(image, (bytes, str, Path, Image.Image)) or hasattr(image, "read"):
        return load_rgb(image, max_pixels=max_pixels)  # checks the size before decoding
    if isinstance(image, np.ndarray):
        # The shape first: a batch (N, H, W, 3) would otherwise be checked as an H x N photo.
        if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
            raise ImageError(f"image array must be (H, W), (H, W, 3) or (H, W, 4), got shape {quoted(image.shape)}")
        check_pixels("image array", image.shape[1], image.shape[0], max_pixels)
        if 0 in image.shape[:2]:
            raise ImageError(f"image array is empty: shape {image.shape}")
        if image.dtype != np.uint8:
            raise ImageError(f"image array must be uint8, got {image.dtype}")
        return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3]
    raise ImageError(f"cannot read an image from {type(image).__name__} "
                     "(give a path, bytes, a binary file, a PIL image or a uint8 array)")


def check_photos(photos) -> None:
    """Refuse a batch that is not a list or tuple: a path's characters, an array's rows are no photos."""
    if not isinstance(photos, (list, tuple)):
        one = isinstance(photos, (np.ndarray, Image.Image, bytes, str, Path)) or hasattr(photos, "read")
        raise PetsegError(f"must be a list or tuple of photos, got {type(photos).__name__} "
                          f"({'for one photo, pass [photo]' if one else 'pass list(photos)'})", option="photos")


@dataclass
class Prediction:
    """Model-size probabilities (C, S, S), where the photo sits in them, and which class is which."""

    probabilities: np.ndarray
    letterbox: Letterbox
    classes: PetClasses = THREE_CLASSES

    def crop(self) -> np.ndarray:
        """(C, h, w): the probabilities over the photo, padding cut away."""
        box = self.letterbox
        return self.probabilities[:, box.top : box.top + box.height, box.left : box.left + box.width]

    def restore(self) -> np.ndarray:
        """(C, H, W) float32 probabilities at the photo's original size.

        Upsampled channel by channel exactly as `alpha` and `labels` do, so
        restore().argmax(0) == labels().
        """
        box = self.letterbox
        return np.stack([upsample(channel, box.source_height, box.source_width) for channel in self.crop()])

    def soft_alpha(self) -> np.ndarray:
        """(h, w) float32 P(pet) + P(border) / 2 over the photo, at the model's size."""
        return soft_alpha(self.crop(), self.classes)

    def alpha(self) -> np.ndarray:
        """(H, W) uint8 soft alpha at the photo's size, without full-size float maps."""
        box = self.letterbox
        return upsample_alpha(self.soft_alpha(), box.source_height, box.source_width)

    def hard_alpha(self) -> np.ndarray:
        """(H, W) uint8 label mask: 255 where the upsampled argmax is pet or border, else 0."""
        box = self.letterbox
        opaque = [255 * (index in self.classes.foreground) for index in range(len(self.probabilities))]
        return upsample_labels(self.crop(), box.source_height, box.source_width, opaque)

    def labels(self) -> np.ndarray:
        """(H, W) uint8 class indices: the argmax of the upsampled probabilities."""
        box = self.letterbox
        return upsample_labels(self.crop(), box.source_height, box.source_width)


def check_flip_tta(flip_tta, option: str = "flip_tta") -> None:
    """Refuse a flip_tta that is not True, False or None (the text "no" would have turned it on)."""
    if flip_tta is not None and not isinstance(flip_tta, bool):
        raise PetsegError(f"must be True, False or None, got {quoted(flip_tta)}", option=option)


def flips_for(flip_tta: bool | None, alpha: str | None) -> bool:
    """Whether predictions for a cutout alpha average in the mirrored photo's.

    flip_tta True or False decides for every use; None (the default) flips for "matting"
    only. There the extra model pass pays: averaging two views removes background specks
    that one view alone takes for pet (bg_clear 0.984 -> 0.985 on the sample's test list).
    "hard" and "soft" are the fast paths, and alpha None (labels, plain probabilities)
    shows the network's single answer.
    """
    check_flip_tta(flip_tta)
    return flip_tta if flip_tta is not None else alpha == "matting"


def letterbox_batch(photos: Sequence[np.ndarray], config: ModelConfig) -> tuple[np.ndarray, list[Letterbox]]:
    """(H, W, 3) uint8 photos -> one normalised float32 (N, 3, S, S) batch and each one's Letterbox.

    As in training: the photo scaled into the square, padded with the mean colour.
    numpy and Pillow only, so cutouts never need PyTorch.
    """
    fill = mean_fill(config.mean)
    boxes = [Letterbox.fit(photo.shape[0], photo.shape[1], config.image_size) for photo in photos]
    squares = np.stack([box.apply_image(photo, fill) for box, photo in zip(boxes, photos)])
    return normalize_array(squares, config.mean, config.std), boxes


class Segmenter:
    """A loaded model plus the preprocessing stored with it.

    flip_tta: also predict each photo's mirror image and average the two (flipped
    back): twice the model time for steadier edges and fewer one-sided mistakes.
    True: always; False: never; None (default): for matted cutouts only (see `flips_for`).
    """

    def __init__(self, backend, *, flip_tta: bool | None = None, name: str = UNNAMED_MODEL):
        check_flip_tta(flip_tta)
        self.backend = backend
        self.flip_tta = flip_tta
        self.name = name  # how messages name the model: its file, when it came from one
        try:
            self.classes = PetClasses.from_labels(backend.config.labels)  # refuses a model that has no background
        except PetsegError as error:
            if name == UNNAMED_MODEL:  # no file to name: "the model's classes ..." says it
                raise
            raise PetsegError(f"{name}: {error.message}", advice=error.advice, option=error.option) from None

    @property
    def config(self) -> ModelConfig:
        return self.backend.config

    @classmethod
    def load(cls, model: str | Path | None = None, backend: str | None = None, *, threads: int | None = None,
             flip_tta: bool | None = None) -> "Segmenter":
        """Load a run folder, .safetensors or .onnx file (None: the bundled model).

        backend: "torch" or "onnx". By default the bundled model and .onnx files run on
        ONNX Runtime (no PyTorch needed) and .safetensors files on PyTorch; a
        .safetensors file with backend="onnx" is exported in memory (PyTorch again).
        flip_tta: average predictions with those of the mirrored photo: True, False, or None
        for matted cutouts only (see the class).
        """
        check_threads(threads)
        check_flip_tta(flip_tta)
        if backend is not None and backend not in BACKENDS:
            raise PetsegError(f"backend {quoted(backend)} is not one of {', '.join(BACKENDS)}")
        if model is None:
            path = bundled_model_path(".safetensors" if backend == "torch" else ".onnx")
        else:
            path = resolve_model_path(model)
        if path.suffix.lower() == ".onnx":
            if backend == "torch":
                raise PetsegError(f"{path}: an .onnx model runs on the onnx backend, not torch")
            from petseg.inference.backends import OnnxBackend

            return cls(OnnxBackend(path, threads=threads), flip_tta=flip_tta, name=str(path))
        try:
            from petseg.models import load_model

            return cls.from_model(load_model(path), backend or "torch", threads=threads, flip_tta=flip_tta,
                                  name=str(path))
        except TrainInstallMissing as error:  # the file, not load_model, is what the user knows
            raise PetsegError(f"{path}: a .safetensors model needs {error.package}: {TRAIN_INSTALL}") from None

    @classmethod
    def from_model(cls, model, backend: str = "torch", *, threads: int | None = None,
                   flip_tta: bool | None = None, name: str = UNNAMED_MODEL) -> "Segmenter":
        """Wrap an in-memory petseg model (anything create_model/load_model returns); `name`
        names it in messages."""
        check_threads(threads)
        check_flip_tta(flip_tta)
        from petseg.inference.backends import OnnxBackend, TorchBackend

        if backend == "torch":
            return cls(TorchBackend(model), flip_tta=flip_tta, name=name)
        if backend == "onnx":
            from petseg.inference.export import export_onnx

            return cls(OnnxBackend(export_onnx(model), threads=threads), flip_tta=flip_tta, name=name)
        raise PetsegError(f"backend {backend!r} is not one of {', '.join(BACKENDS)}")

    def preprocess(self, photos: Sequence[np.ndarray]) -> tuple[np.ndarray, list[Letterbox]]:
        """Letterbox photos into one normalised float32 (N, 3, S, S) batch."""
        return letterbox_batch(photos, self.config)

    def flips_for(self, alpha: str | None) -> bool:
        """Whether a cutout with this alpha ("matting", "hard", "soft"; None: labels or
        probabilities) averages in the mirrored photo (see `flips_for`)."""
        return flips_for(self.flip_tta, alpha)

    def predict_batch(self, photos: Sequence[PhotoLike], *, flip: bool | None = None) -> list[Prediction]:
        """One backend call for a batch of photos; probabilities stay at model size.

        Upright (H, W, 3) uint8 arrays are used as they are; anything else `as_photo` takes
        is decoded first (arrays are in memory already: only files are held to the pixel limit).
        flip: average with the mirrored photos' predictions; None: only if flip_tta is True
        (cutouts pass `flips_for(alpha)`).
        """
        check_flip_tta(flip, "flip")
        flip = self.flips_for(None) if flip is None else flip
        return self.predict_views(photos, (flip,))[flip]

    def predict_views(self, photos: Sequence[PhotoLike], flips: Sequence[bool]) -> dict[bool, list[Prediction]]:
        """Predictions without (False) and/or with (True) flip averaging, from one backend
        call: the plain half of a flipped batch is the plain prediction, so scoring both
        costs no more than flipping."""
        check_photos(photos)
        if not isinstance(flips, (list, tuple)) or not all(isinstance(flip, bool) for flip in flips):
            raise PetsegError(f"must be a list or tuple of True and False, got {quoted(flips)}", option="flips")
        if not photos:
            return {flip: [] for flip in flips}
        photos = [as_photo(photo, max_pixels=None) if isinstance(photo, np.ndarray) else as_photo(photo)
                  for photo in photos]
        batch, boxes = self.preprocess(photos)
        count = len(batch)
        # Mirroring the whole square (padding included) and mirroring the answer back
        # lands every pixel where it was, whatever the letterbox offsets.
        outputs = self.backend(np.concatenate([batch, batch[..., ::-1]]) if True in flips else batch)
        if not np.isfinite(outputs).all():  # NaN or infinite weights: every cutout would be wrong
            raise PetsegError(f"{self.name}: the model's probabilities are NaN or infinite (are its weights broken?)")
        views = {}
        for flip in dict.fromkeys(flips):
            probabilities = (outputs[:count] + outputs[count:, ..., ::-1]) / 2 if flip else outputs[:count]
            views[flip] = [Prediction(probabilities[index], box, self.classes) for index, box in enumerate(boxes)]
        return views

    def predict(self, images, *, batch_size: int = DEFAULT_BATCH_SIZE, max_pixels: int | None = DEFAULT_MAX_PIXELS):
        """Probabilities (C, H, W) float32 at each image's original size.

        images: one image or a list (ndarray, PIL image, encoded bytes or a path);
        a list gives a list, one image gives one array.
        """
        check_whole_number(batch_size, "batch_size", 1, MAX_BATCH_SIZE)
        single = not isinstance(images, (list, tuple))
        photos = [as_photo(image, max_pixels=max_pixels) for image in ([images] if single else images)]
        results = []
        for start in range(0, len(photos), batch_size):
            results += [prediction.restore() for prediction in self.predict_batch(photos[start : start + batch_size])]
        return results[0] if single else results

