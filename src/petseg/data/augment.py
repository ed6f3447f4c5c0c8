"""Training augmentation on letterboxed uint8 squares, with torchvision.transforms.v2.

Three stages, in this order:
- copy-paste (optional): the pet, cut out by its trimap, is pasted onto a pet-free piece
  of another training photo, so the model cannot learn "this sofa means this cat";
- geometric: flip, random resized crop, zoom and small rotations move image and mask
  together (tv_tensors.Mask: nearest-neighbour, new pixels IGNORE_INDEX; the image's new
  pixels take the letterbox padding colour);
- pet recolouring (optional): the pet alone turned white, black or grey, fur colours the
  sample lacks (petseg.data.pet_recolor);
- appearance: brightness/contrast/saturation/hue, gamma, grayscale, blur and noise,
  the image only: fur colours and photo conditions the sample lacks.

Randomness comes from torch's generator, which DataLoader seeds per worker and the
training loop per epoch, so a resumed run replays the same augmentations. The reference
notebook used a random horizontal flip alone, which stays the default.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable, Sequence

import numpy as np

from petseg.data.copy_paste import paste_on_background
from petseg.data.labels import IGNORE_INDEX
from petseg.data.pet_recolor import random_recolor
from petseg.errors import PetsegError, quoted

Pair = tuple[np.ndarray, np.ndarray]
BLUR_KERNEL = 5
BLUR_SIGMA = (0.1, 1.5)
# The share of the side a zoomed image may drift, so zoomed crops come from anywhere.
ZOOM_TRANSLATE = 0.1


def _range(name: str, value) -> tuple[float, float] | None:
    if value is None:
        return None
    if len(value) != 2 or not 0 < value[0] <= value[1]:
        raise PetsegError(f"must be (min, max) with 0 < min <= max, got {quoted(value)}", option=name)
    return (float(value[0]), float(value[1]))


@dataclass(frozen=True)
class Augment:
    """Every knob off but hflip by default (each maps to a TrainConfig field of the same name).

    hflip: flip left-right half the time. crop_scale: (min, max) share of the area kept by
    a random resized crop. scale: (min, max) zoom about a random point, crop or pad back.
    rotation: at most this many degrees either way. color_jitter: J varies brightness,
    contrast and saturation by a factor in [1 - J, 1 + J]. hue: shift by up to this much
    of the colour wheel (at most 0.5). gamma: G draws gamma in [1 - G, 1 + G]. grayscale,
    blur, copy_paste, pet_recolor: the probability of each. noise: the standard deviation of Gaussian
    pixel noise (a share of the 0..255 range) added half the time.
    """

    hflip: bool = True
    scale: tuple[float, float] | None = None
    color_jitter: float = 0.0
    crop_scale: tuple[float, float] | None = None
    rotation: float = 0.0
    hue: float = 0.0
    gamma: float = 0.0
    grayscale: float = 0.0
    blur: float = 0.0
    noise: float = 0.0
    copy_paste: float = 0.0
    pet_recolor: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "scale", _range("scale", self.scale))
        object.__setattr__(self, "crop_scale", _range("crop_scale", self.crop_scale))
        if self.crop_scale is not None and self.crop_scale[1] > 1:
            raise PetsegError(f"is a share of the area, at most 1, got {quoted(self.crop_scale)}", option="crop_scale")
        # Factors 1 - J must stay positive; the others are probabilities or plain bounds.
        below = {"color_jitter": 1, "gamma": 1}
        up_to = {"hue": 0.5, "rotation": 180, "noise": 1, "grayscale": 1, "blur": 1, "copy_paste": 1, "pet_recolor": 1}
        for name, limit in below.items():
            if not 0 <= getattr(self, name) < limit:
                raise PetsegError(f"must be in [0, {limit}), got {quoted(getattr(self, name))}", option=name)
        for name, limit in up_to.items():
            if not 0 <= getattr(self, name) <= limit:
                raise PetsegError(f"must be in [0, {limit}], got {quoted(getattr(self, name))}", option=name)

    @classmethod
    def from_config(cls, config) -> "Augment":
        """The Augment of a TrainConfig (its fields of the same names)."""
        return cls(**{f.name: getattr(config, f.name) for f in fields(cls) if hasattr(config, f.name)})

    def __call__(self, image: np.ndarray, mask: np.ndarray, fill: Sequence[int] | int = 0,
                 donor: Callable[[], Pair] | None = None) -> Pair:
        """(S, S, 3) uint8 image and (S, S) uint8 mask -> the same shapes, augmented.

        donor: gives another training sample (image, mask) for copy-paste, asked only when used.
        """
        import torch
        from torchvision import tv_tensors

        if self.copy_paste and donor is not None and torch.rand(()).item() < self.copy_paste:
            image, mask = paste_on_background(image, mask, *donor())
        image_t = tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1))
        mask_t = tv_tensors.Mask(torch.from_numpy(np.ascontiguousarray(mask)))
        image_t, mask_t = self._geometric(mask.shape[0], fill)(image_t, mask_t)
        if self.pet_recolor and torch.rand(()).item() < self.pet_recolor:
            recolored = random_recolor(image_t.permute(1, 2, 0).numpy(), mask_t.numpy())
            image_t = tv_tensors.Image(torch.from_numpy(recolored).permute(2, 0, 1))
        image_t = self._appearance()(image_t)
        return image_t.permute(1, 2, 0).contiguous().numpy(), mask_t.numpy()

    def _geometric(self, size: int, fill):
        from torchvision import tv_tensors
        from torchvision.transforms import v2

        fills = {tv_tensors.Image: tuple(np.broadcast_to(np.asarray(fill), 3).tolist()), tv_tensors.Mask: IGNORE_INDEX}
        steps = [v2.RandomHorizontalFlip()] if self.hflip else []
        if self.crop_scale is not None:
            steps.append(v2.RandomResizedCrop(size, scale=self.crop_scale, antialias=True))
        if self.scale is not None or self.rotation:
            translate = (ZOOM_TRANSLATE, ZOOM_TRANSLATE) if self.scale is not None else None
            steps.append(v2.RandomAffine(degrees=self.rotation, translate=translate, scale=self.scale,
                                         interpolation=v2.InterpolationMode.BILINEAR, fill=fills))
        return v2.Compose(steps or [v2.Identity()])

    def _appearance(self):
        import torch
        from torchvision.transforms import v2

        steps = []
        if self.color_jitter or self.hue:
            strength = self.color_jitter or None
            steps.append(v2.ColorJitter(brightness=strength, contrast=strength, saturation=strength,
                                        hue=self.hue or None))
        if self.grayscale:
            steps.append(v2.RandomGrayscale(p=self.grayscale))
        if self.blur:
            steps.append(v2.RandomApply([v2.GaussianBlur(BLUR_KERNEL, sigma=BLUR_SIGMA)], p=self.blur))
        if self.gamma or self.noise:
            steps.append(v2.ToDtype(torch.float32, scale=True))
            if self.gamma:
                steps.append(v2.Lambda(self._random_gamma))
            if self.noise:
                steps.append(v2.RandomApply([v2.GaussianNoise(sigma=self.noise)], p=0.5))
            steps.append(v2.ToDtype(torch.uint8, scale=True))
        return v2.Compose(steps or [v2.Identity()])

    def _random_gamma(self, image):
        import torch
        from torchvision.transforms.v2 import functional

        gamma = torch.empty(()).uniform_(1 - self.gamma, 1 + self.gamma).item()
        return functional.adjust_gamma(image, gamma)
