"""A generated pet dataset in the official Oxford-IIIT Pet layout.

Blob-shaped "pets" with a smooth fur texture on striped, noisy backgrounds, with a
1-2 px border class around each outline like the real trimaps. It lets training,
evaluation and the tests run offline in seconds, and it is deterministic for a seed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from petseg.atomic import make_temporary_folder, remove_stale_temporaries
from petseg.data.masks import dilate, erode
from petseg.errors import PetsegError, quoted
from petseg.limits import MAX_SEED, MAX_TOY_IMAGES, check_whole_number, is_whole_number

# Official naming: cat breeds are capitalised, dog breeds are lower case.
# (name, species: 1 cat / 2 dog, breed id within the species)
TOY_BREEDS = (("Roundcat", 1, 1), ("Spikycat", 1, 2), ("lumpy_dog", 2, 1), ("long_dog", 2, 2))

_LIST_HEADER = (
    "#Image CLASS-ID SPECIES BREED ID\n"
    "#ID: 1:4 Class ids\n"
    "#SPECIES: 1:Cat 2:Dog\n"
    "#BREED ID: 1-2:Cat 1-2:Dog\n"
    "#All images with 1st letter as captial are cat images\n"
    "#images with small first letter are dog images\n"
)

MIN_SIZE = 16
# Toy pets are for tests and demos. A pet is drawn a band of rows at a time, so its memory is
# the photo's bytes and a few masks: `petseg data toy --size 4096` peaks at 180 MB (1.6 GB when
# whole float64 images were drawn at once).
MAX_SIZE = 4096
# Pixels drawn at a time: a band's float64 temporaries take a few MB whatever the size.
BAND_PIXELS = 1 << 16



def _bands(height: int, width: int) -> list[slice]:
    """Row slices covering the image, each about BAND_PIXELS pixels."""
    step = max(1, BAND_PIXELS // width)
    return [slice(top, min(top + step, height)) for top in range(0, height, step)]


def _grid(rows: slice, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(ys, xs) float64 coordinates of the band's pixels."""
    return np.mgrid[rows, 0:width].astype(np.float64)


# The drawings below take their random numbers in the order whole-image drawing took them
# (blob, fur with its noise, background with its noise), and compute each pixel with the
# same float64 operations: a seed gives the same pets, bit for bit, as before banding.


def _blob_mask(rng: np.random.Generator, height: int, width: int, lobes: int) -> np.ndarray:
    """A star-shaped blob: a circle whose radius wobbles with a few random harmonics."""
    center_y = rng.uniform(0.35, 0.65) * height
    center_x = rng.uniform(0.35, 0.65) * width
    radius = rng.uniform(0.22, 0.34) * min(height, width)
    # (amplitude / harmonic, harmonic, phase), each amplitude drawn before its phase
    waves = [(rng.uniform(0.05, 0.25) / harmonic, harmonic, rng.uniform(0, 2 * np.pi))
             for harmonic in range(2, 2 + lobes)]
    pet = np.empty((height, width), dtype=bool)
    for rows in _bands(height, width):
        ys, xs = _grid(rows, width)
        angle = np.arctan2(ys - center_y, xs - center_x)
        distance = np.hypot(ys - center_y, xs - center_x)
        wobble = np.ones_like(angle)
        for amplitude, harmonic, phase in waves:
            wobble += amplitude * np.cos(harmonic * angle + phase)
        pet[rows] = distance <= radius * wobble
    return pet


def _paint_fur(rng: np.random.Generator, photo: np.ndarray, pet: np.ndarray) -> None:
    """A smooth shaded body colour with faint noise, the pet's texture, on the pet's pixels of `photo`."""
    height, width = pet.shape
    base = rng.uniform(90, 250, size=3)
    frequency = rng.uniform(0.5, 2)
    for rows in _bands(height, width):
        ys, xs = _grid(rows, width)
        shade = 25 * np.cos(xs / width * np.pi * frequency) * np.sin(ys / height * np.pi)
        fur = base + shade[..., None] + rng.normal(0, 5, size=(*ys.shape, 3))
        _paint(photo[rows], fur, pet[rows])


def _paint_background(rng: np.random.Generator, photo: np.ndarray, pet: np.ndarray) -> None:
    """Stripes at a random angle plus pixel noise, in a random dull colour, around the pet."""
    height, width = pet.shape
    theta = rng.uniform(0, np.pi)
    period = rng.uniform(4, 12)
    base = rng.uniform(60, 190, size=3)
    for rows in _bands(height, width):
        ys, xs = _grid(rows, width)
        stripes = np.sin((xs * np.cos(theta) + ys * np.sin(theta)) * 2 * np.pi / period)
        background = base + 35 * stripes[..., None] + rng.normal(0, 12, size=(*ys.shape, 3))
        _paint(photo[rows], background, ~pet[rows])


def _paint(band: np.ndarray, colours: np.ndarray, where: np.ndarray) -> None:
    band[where] = np.clip(colours[where], 0, 255).astype(np.uint8)


def make_toy_image(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One (photo uint8 (H, W, 3), trimap uint8 (H, W) in {1, 2, 3}); the long side is `size`."""
    short = int(round(size * rng.uniform(0.7, 1.0)))
    height, width = (size, short) if rng.random() < 0.5 else (short, size)
    pet = _blob_mask(rng, height, width, lobes=int(rng.integers(2, 5)))
    if not pet.any():  # tiny sizes can round the blob away; keep one pet pixel at least
        pet[height // 2, width // 2] = True
    photo = np.empty((height, width, 3), dtype=np.uint8)
    _paint_fur(rng, photo, pet)
    _paint_background(rng, photo, pet)
    # Like the real trimaps, the outline is "not classified": one pixel outside the
    # pet, and for some pets one more inside.
    border = dilate(pet, 1, corners=False) & ~erode(pet, int(rng.integers(0, 2)), corners=False)
    trimap = np.full((height, width), 2, dtype=np.uint8)
    trimap[pet] = 1
    trimap[border] = 3
    return photo, trimap


def _write_dataset(folder: Path, n: int, size: int, seed: int) -> None:
    """Draw and write the pets one at a time: memory does not grow with n."""
    (folder / "images").mkdir()
    (folder / "annotations" / "trimaps").mkdir(parents=True)
    with contextlib.ExitStack() as files:
        lists = {split: files.enter_context(open(folder / "annotations" / f"{split}.txt", "w"))
                 for split in ("list", "trainval", "test")}
        lists["list"].write(_LIST_HEADER)
        for index in range(n):
            breed, species, breed_id = TOY_BREEDS[index % len(TOY_BREEDS)]
            name = f"{breed}_{index // len(TOY_BREEDS) + 1}"
            # The index-th child of SeedSequence(seed).spawn(n), made when its pet is drawn
            # (spawn(n) made all n first: 1.5 GB for n = 100 million before a pet was written).
            child = np.random.SeedSequence(seed, spawn_key=(index,))
            photo, trimap = make_toy_image(np.random.default_rng(child), size)
            Image.fromarray(photo).save(folder / "images" / f"{name}.jpg", quality=92)
            Image.fromarray(trimap, "L").save(folder / "annotations" / "trimaps" / f"{name}.png")
            line = f"{name} {index % len(TOY_BREEDS) + 1} {species} {breed_id}\n"
            lists["list"].write(line)
            # Half of each breed in each split, like the official lists.
            lists["trainval" if (index // len(TOY_BREEDS)) % 2 == 0 else "test"].write(line)


def check_toy_options(n, size, seed) -> None:
    """Refuse a count, size or seed make_toy_dataset cannot use, naming the keyword."""
    check_whole_number(n, "n", 1, MAX_TOY_IMAGES)
    if not is_whole_number(size, MIN_SIZE, MAX_SIZE):
        raise PetsegError(f"must be {MIN_SIZE}..{MAX_SIZE} pixels, got {quoted(size)}", option="size")
    if not is_whole_number(seed, 0, MAX_SEED):  # worded as `petseg train --seed` words it
        raise PetsegError(f"must be in 0..{MAX_SEED}, got {quoted(seed)}", option="seed")


def make_toy_dataset(out_dir: str | Path, n: int = 24, size: int = 96, seed: int = 0, *, force: bool = False) -> Path:
    """Write `n` toy pets (long side `size` px) in the official Oxford layout under `out_dir`.

    The folder appears complete or not at all: it is built beside `out_dir` (in
    `.NAME.petseg-tmp-PID-RANDOM`) and renamed. A run that is interrupted removes its
    staging folder; what a killed one left is removed by the next run for the same
    `out_dir`. An existing non-empty `out_dir` is replaced only with `force=True`.
    """
    check_toy_options(n, size, seed)
    out_dir = Path(out_dir)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise PetsegError(f"{out_dir}: exists and is not a folder")
        if any(out_dir.iterdir()) and not force:
            raise PetsegError(f"{out_dir}: folder is not empty", advice="{force} replaces it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_dir.parent)  # what killed runs (of any petseg command) left there
    building = make_temporary_folder(out_dir)
    try:
        _write_dataset(building, n, size, seed)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(building, out_dir)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return out_dir
