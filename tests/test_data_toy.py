"""The toy dataset: official layout, valid trimaps with a thin border, deterministic per seed."""

import hashlib

import numpy as np
import pytest
from PIL import Image

from petseg.data.decode import sniff_format
from petseg.data.layouts import load_samples, read_split_list
from petseg.data.toy import make_toy_dataset
from petseg.errors import PetsegError


def _digest(folder):
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_official_layout_and_lists(toy_data):
    images = sorted(p.stem for p in (toy_data / "images").glob("*.jpg"))
    trimaps = sorted(p.stem for p in (toy_data / "annotations" / "trimaps").glob("*.png"))
    assert len(images) == 24 and images == trimaps
    listed = read_split_list(toy_data / "annotations" / "list.txt")
    trainval = read_split_list(toy_data / "annotations" / "trainval.txt")
    test = read_split_list(toy_data / "annotations" / "test.txt")
    assert sorted(listed) == images
    assert sorted(trainval + test) == images and not set(trainval) & set(test)
    assert len(trainval) == len(test) == 12
    # Official naming: cats capitalised, dogs lower case, species column agrees.
    for line in (toy_data / "annotations" / "list.txt").read_text().splitlines():
        if not line.startswith("#"):
            name, _, species, _ = line.split()
            assert (species == "1") == name[0].isupper()
    assert all(sniff_format(p) == "JPEG" for p in (toy_data / "images").iterdir())


def test_trimaps_have_pet_background_and_a_thin_border(toy_data):
    for path in sorted((toy_data / "annotations" / "trimaps").glob("*.png")):
        trimap = np.asarray(Image.open(path))
        photo = Image.open(toy_data / "images" / f"{path.stem}.jpg")
        assert trimap.shape == (photo.height, photo.width) and max(trimap.shape) == 96
        assert set(np.unique(trimap)) == {1, 2, 3}
        # Pet and background never touch: a border pixel separates them.
        pet, background = trimap == 1, trimap == 2
        assert not (pet[:, 1:] & background[:, :-1]).any() and not (pet[1:] & background[:-1]).any()
        # The border is 1-2 px wide: every border pixel touches (8-neighbourhood) a non-border pixel.
        border = trimap == 3
        padded = np.pad(~border, 1, constant_values=True)
        height, width = border.shape
        near_other = np.zeros_like(border)
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                near_other |= padded[dy : dy + height, dx : dx + width]
        assert near_other[border].all()
        assert border.sum() < 0.25 * trimap.size


def test_pets_differ_from_their_background(toy_data):
    # The task must be learnable: pet pixels and background pixels have different colours.
    differences = []
    for sample in load_samples(toy_data, "all"):
        photo = np.asarray(Image.open(sample.image_path), dtype=np.float64)
        trimap = np.asarray(Image.open(sample.mask_path))
        differences.append(np.abs(photo[trimap == 1].mean(0) - photo[trimap == 2].mean(0)).max())
    assert np.median(differences) > 20


def test_deterministic_per_seed(tmp_path):
    first = make_toy_dataset(tmp_path / "a", n=6, size=48, seed=3)
    second = make_toy_dataset(tmp_path / "b", n=6, size=48, seed=3)
    other = make_toy_dataset(tmp_path / "c", n=6, size=48, seed=4)
    assert _digest(first) == _digest(second)
    assert _digest(first) != _digest(other)


def test_refuses_to_overwrite_without_force(tmp_path):
    out = make_toy_dataset(tmp_path / "pets", n=2, size=32)
    with pytest.raises(PetsegError, match="not empty; force replaces it"):
        make_toy_dataset(out, n=3, size=32)
    make_toy_dataset(out, n=3, size=32, force=True)
    assert len(list((out / "images").iterdir())) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["pets"]  # no leftover build folder


@pytest.mark.parametrize("options, message", [
    ({"n": 0}, "^n must"), ({"size": 4}, "^size must"), ({"size": 100_000}, "^size must be 16..4096 pixels, got 100000"),
])
def test_bad_options_name_the_option(tmp_path, options, message):
    with pytest.raises(PetsegError, match=message):
        make_toy_dataset(tmp_path / "pets", **options)
    assert not (tmp_path / "pets").exists()
