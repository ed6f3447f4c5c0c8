"""The toy dataset: official layout, valid trimaps with a thin border, deterministic per seed."""

import hashlib
import os
import signal
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from petseg.data.decode import sniff_format
from petseg.data.layouts import load_samples, read_split_list
import petseg.data.toy as toy
from petseg.data.toy import make_toy_dataset
from petseg.errors import PetsegError

# No process has this id: Linux's pid_max is at most 2**22.
DEAD_PID = 99_999_999


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
    ({"n": 100_001, "size": 16}, "^n must be a whole number in 1..100000, got 100001$"), ({"n": 2.0}, "^n must"),
    ({"size": 96.5}, "^size must"), ({"seed": -1}, r"^seed must be in 0..4294967295, got -1$"),
    ({"seed": 2**32}, "^seed must be in 0..4294967295, got 4294967296$"), ({"seed": None}, "^seed must"),
])
def test_bad_options_name_the_option(tmp_path, options, message):
    with pytest.raises(PetsegError, match=message):
        make_toy_dataset(tmp_path / "pets", **options)
    assert not (tmp_path / "pets").exists()


def _petseg(*args, timeout=60):
    """The real entry point in a child process (one-line errors, exit codes)."""
    return subprocess.run([sys.executable, "-m", "petseg", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("option, value, message", [
    ("--n", 100_001, "--n must be a whole number in 1..100000, got 100001"),
    ("--seed", -1, "--seed must be in 0..4294967295, got -1"),  # as `petseg train --seed -1` says it
])
def test_cli_refuses_a_bad_count_or_seed_in_one_line_before_any_work(tmp_path, option, value, message):
    result = _petseg("data", "toy", tmp_path / "pets", "--n", 1, "--size", 16, option, value)
    assert (result.returncode, result.stderr) == (2, f"error: {message}\n")
    assert list(tmp_path.iterdir()) == []  # no output folder, no staging folder


class _Stop(Exception):
    pass


def _peak_memory_until_the_third_pet(monkeypatch, folder, n):
    """Python's peak allocation (tracemalloc) from the call until the third pet is drawn."""
    drawn, draw = [], toy.make_toy_image

    def two_then_stop(rng, size):
        if len(drawn) == 2:
            raise _Stop
        drawn.append(size)
        return draw(rng, size)

    monkeypatch.setattr(toy, "make_toy_image", two_then_stop)
    tracemalloc.start()
    try:
        with pytest.raises(_Stop):
            make_toy_dataset(folder, n=n, size=16)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_before_the_first_pets_does_not_grow_with_n(tmp_path, monkeypatch):
    # SeedSequence(seed).spawn(n) made all n seeds before the first pet: 1.5 GB for 100 million.
    few = _peak_memory_until_the_third_pet(monkeypatch, tmp_path / "few", 8)
    most = _peak_memory_until_the_third_pet(monkeypatch, tmp_path / "most", 100_000)
    assert most < few + 1_000_000, (few, most)
    assert list(tmp_path.iterdir()) == []  # the interrupted runs removed their staging folders


def _pixels_digest(monkeypatch, folder, n, size, seed):
    """sha256 of every (photo, trimap) make_toy_dataset draws, before JPEG touches them."""
    digest, draw = hashlib.sha256(), toy.make_toy_image

    def recorded(rng, size):
        photo, trimap = draw(rng, size)
        digest.update(repr((photo.shape, trimap.shape)).encode())
        digest.update(photo.tobytes())
        digest.update(trimap.tobytes())
        return photo, trimap

    monkeypatch.setattr(toy, "make_toy_image", recorded)
    make_toy_dataset(folder, n=n, size=size, seed=seed)
    return digest.hexdigest()


def test_drawing_in_bands_gives_the_pets_drawn_whole(tmp_path, monkeypatch):
    """Each pixel is computed alike whatever the band: 100-pixel bands give the one-band pets, bit for bit."""
    whole = [_pixels_digest(monkeypatch, tmp_path / f"whole{seed}", 4, 48, seed) for seed in (3, 11)]
    monkeypatch.setattr(toy, "BAND_PIXELS", 100)
    banded = [_pixels_digest(monkeypatch, tmp_path / f"banded{seed}", 4, 48, seed) for seed in (3, 11)]
    assert banded == whole and whole[0] != whole[1]


def _folder(path):
    (path / "images").mkdir(parents=True)
    (path / "images" / "Roundcat_1.jpg").write_bytes(b"half a pet")
    return path


def test_a_later_run_removes_the_staging_folders_killed_runs_left(tmp_path):
    removed = [_folder(tmp_path / f".pets.petseg-tmp-{DEAD_PID}-0123abcd")]
    kept = [
        _folder(tmp_path / f".pets.petseg-tmp-{os.getpid()}-0123abcd"),  # its run is still going
        _folder(tmp_path / ".pets.backup"),
        _folder(tmp_path / ".pets"),
        _folder(tmp_path / f".pets.petseg-tmp-{DEAD_PID}-0123abcd.keep"),
    ]
    make_toy_dataset(tmp_path / "pets", n=1, size=16)
    assert sorted(tmp_path.iterdir()) == sorted([*kept, tmp_path / "pets"])
    assert not any(path.exists() for path in removed)


def test_sigterm_removes_the_staging_folder(tmp_path):
    command = [sys.executable, "-m", "petseg", "data", "toy", str(tmp_path / "pets"), "--n", "100000", "--size", "16"]
    run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.iterdir()) and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list(tmp_path.glob(".pets.*")), "no staging folder appeared"
        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        run.kill()
        run.wait()
    assert list(tmp_path.iterdir()) == []
