"""A generated pet dataset in the official Oxford-IIIT Pet layout.

Blob-shaped "pets" with a smooth fur texture on striped, noisy backgrounds, with a
1-2 px border class around each outline like the real trimaps. It lets training,
evaluation and the tests run offline in seconds, and it is deterministic for a seed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from petseg.data.masks import dilate, erode
from petseg.errors import PetsegError

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
MAX_SIZE = 4096  # toy pets are for tests and demos; their drawing holds a few int64 arrays of the image's size


def _blob_mask(rng: np.random.Generator, height: int, width: int, lobes: int) -> np.ndarray:
    """A star-shaped blob: a circle whose radius wobbles with a few random harmonics."""
    center_y = rng.uniform(0.35, 0.65) * height
    center_x = rng.uniform(0.35, 0.65) * width
    radius = rng.uniform(0.22, 0.34) * min(height, width)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    angle = np.arctan2(ys - center_y, xs - center_x)
    distance = np.hypot(ys - center_y, xs - center_x)
    wobble = np.ones_like(angle)
    for harmonic in range(2, 2 + lobes):
        wobble += rng.uniform(0.05, 0.25) / harmonic * np.cos(harmonic * angle + rng.uniform(0, 2 * np.pi))
    return distance <= radius * wobble


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Stripes at a random angle plus pixel noise, in a random dull colour."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    theta = rng.uniform(0, np.pi)
    period = rng.uniform(4, 12)
    stripes = np.sin((xs * np.cos(theta) + ys * np.sin(theta)) * 2 * np.pi / period)
    base = rng.uniform(60, 190, size=3)
    image = base + 35 * stripes[..., None] + rng.normal(0, 12, size=(height, width, 3))
    return image


def _fur(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth shaded body colour with faint noise: the pet's texture."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    base = rng.uniform(90, 250, size=3)
    shade = 25 * np.cos(xs / width * np.pi * rng.uniform(0.5, 2)) * np.sin(ys / height * np.pi)
    return base + shade[..., None] + rng.normal(0, 5, size=(height, width, 3))


def make_toy_image(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One (photo uint8 (H, W, 3), trimap uint8 (H, W) in {1, 2, 3}); the long side is `size`."""
    short = int(round(size * rng.uniform(0.7, 1.0)))
    height, width = (size, short) if rng.random() < 0.5 else (short, size)
    pet = _blob_mask(rng, height, width, lobes=int(rng.integers(2, 5)))
    if not pet.any():  # tiny sizes can round the blob away; keep one pet pixel at least
        pet[height // 2, width // 2] = True
    photo = np.where(pet[..., None], _fur(rng, height, width), _background(rng, height, width))
    # Like the real trimaps, the outline is "not classified": one pixel outside the
    # pet, and for some pets one more inside.
    border = dilate(pet, 1, corners=False) & ~erode(pet, int(rng.integers(0, 2)), corners=False)
    trimap = np.full((height, width), 2, dtype=np.uint8)
    trimap[pet] = 1
    trimap[border] = 3
    return np.clip(photo, 0, 255).astype(np.uint8), trimap


def _write_dataset(folder: Path, n: int, size: int, seed: int) -> None:
    (folder / "images").mkdir(parents=True)
    (folder / "annotations" / "trimaps").mkdir(parents=True)
    children = np.random.SeedSequence(seed).spawn(n)
    lines = {"list": [], "trainval": [], "test": []}
    for index, child in enumerate(children):
        breed, species, breed_id = TOY_BREEDS[index % len(TOY_BREEDS)]
        name = f"{breed}_{index // len(TOY_BREEDS) + 1}"
        photo, trimap = make_toy_image(np.random.default_rng(child), size)
        Image.fromarray(photo).save(folder / "images" / f"{name}.jpg", quality=92)
        Image.fromarray(trimap, "L").save(folder / "annotations" / "trimaps" / f"{name}.png")
        line = f"{name} {index % len(TOY_BREEDS) + 1} {species} {breed_id}\n"
        lines["list"].append(line)
        # Half of each breed in each split, like the official lists.
        lines["trainval" if (index // len(TOY_BREEDS)) % 2 == 0 else "test"].append(line)
    (folder / "annotations" / "list.txt").write_text(_LIST_HEADER + "".join(lines["list"]))
    for split in ("trainval", "test"):
        (folder / "annotations" / f"{split}.txt").write_text("".join(lines[split]))


def make_toy_dataset(out_dir: str | Path, n: int = 24, size: int = 96, seed: int = 0, *, force: bool = False) -> Path:
    """Write `n` toy pets (long side `size` px) in the official Oxford layout under `out_dir`.

    The folder appears complete or not at all: it is built beside `out_dir` and renamed.
    An existing non-empty `out_dir` is replaced only with `force=True`.
    """
    out_dir = Path(out_dir)
    if n < 1:
        raise PetsegError(f"must be at least 1, got {n}", option="n")
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise PetsegError(f"must be {MIN_SIZE}..{MAX_SIZE} pixels, got {size}", option="size")
    if out_dir.exists():
        if not out_dir.is_dir():
            raise PetsegError(f"{out_dir}: exists and is not a folder")
        if any(out_dir.iterdir()) and not force:
            raise PetsegError(f"{out_dir}: folder is not empty", advice="{force} replaces it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        building.chmod(0o755)  # mkdtemp makes it private; a dataset is not
        _write_dataset(building, n, size, seed)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(building, out_dir)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return out_dir
