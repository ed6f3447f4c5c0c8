"""Which photos a run trains on: breed filters and the clean-data rule, from the library
to the first lines `petseg train` prints."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from petseg.data.breeds import breed_of, breeds_in, resolve_breeds, select_breeds
from petseg.data.check import find_unfit
from petseg.data.layouts import load_samples
from petseg.errors import PetsegError
from petseg.train import resolve_config
from petseg.train.data import load_splits

TOY_BREEDS = ["long_dog", "lumpy_dog", "Roundcat", "Spikycat"]  # sorted as the official list sorts


@pytest.fixture()
def pets(toy_data, tmp_path) -> Path:
    """A private copy of the toy set, free to break."""
    return Path(shutil.copytree(toy_data, tmp_path / "pets"))


def erase_pet(root: Path, name: str) -> None:
    """Make `name`'s trimap all background, like Abyssinian_34's in the real sample."""
    path = root / "annotations" / "trimaps" / f"{name}.png"
    trimap = np.asarray(Image.open(path)).copy()
    trimap[:] = 2
    Image.fromarray(trimap).save(path)


@pytest.mark.parametrize(("name", "breed"), [
    ("Abyssinian_34", "Abyssinian"), ("american_bulldog_12", "american_bulldog"),
    ("great_pyrenees_1", "great_pyrenees"), ("IMG1234", None), ("cat_photo", None),
])
def test_a_breed_is_the_name_without_its_number(name, breed):
    assert breed_of(name) == breed


def test_breed_filters_include_and_exclude_case_insensitively(toy_data):
    samples = load_samples(toy_data, "all")
    assert breeds_in(samples) == TOY_BREEDS
    chosen = select_breeds(samples, include=["ROUNDCAT", "lumpy_Dog"])
    assert {breed_of(s.name) for s in chosen} == {"Roundcat", "lumpy_dog"}
    assert len(chosen) == sum(breed_of(s.name) in ("Roundcat", "lumpy_dog") for s in samples) == 12
    rest = select_breeds(samples, exclude=["roundcat"])
    assert {breed_of(s.name) for s in rest} == {"Spikycat", "lumpy_dog", "long_dog"} and len(rest) == 18
    assert select_breeds(samples, include=["Roundcat", "Spikycat"], exclude=["spikycat"]) == [
        s for s in samples if breed_of(s.name) == "Roundcat"]


def test_an_unknown_breed_is_one_line_listing_the_valid_ones(toy_data):
    with pytest.raises(PetsegError) as error:
        select_breeds(load_samples(toy_data, "all"), exclude=["poodle"])
    assert str(error.value) == f"unknown breed 'poodle'; breeds in this dataset: {', '.join(TOY_BREEDS)}"
    with pytest.raises(PetsegError, match="also excluded"):
        select_breeds(load_samples(toy_data, "all"), include=["Roundcat"], exclude=["ROUNDCAT"])
    with pytest.raises(PetsegError) as error:  # a 5,000-character name came back whole
        select_breeds(load_samples(toy_data, "all"), include=["x" * 5000])
    assert str(error.value).startswith("unknown breed '" + "x" * 100 + "…';") and len(str(error.value)) < 200
    many = [f"breed{number:04d}" for number in range(2000)]  # a user's folder of thousands of "breeds"
    with pytest.raises(PetsegError) as error:
        resolve_breeds(["poodle"], many)
    assert len(str(error.value)) < 1100 and str(error.value).endswith("…")


def test_splits_hold_only_the_chosen_breeds(toy_data, tmp_path):
    config = resolve_config("unet_diy", str(toy_data), str(tmp_path / "run"), exclude_breeds=("spikycat",))
    splits = load_splits(config)
    everything = load_splits(resolve_config("unet_diy", str(toy_data), str(tmp_path / "run")))
    assert {breed_of(s.name) for s in splits.train + splits.val} == {"Roundcat", "lumpy_dog", "long_dog"}
    assert [s.name for s in splits.train] == [s.name for s in everything.train if breed_of(s.name) != "Spikycat"]
    only = load_splits(resolve_config("unet_diy", str(toy_data), str(tmp_path / "run"), breeds=("Spikycat",)))
    assert {breed_of(s.name) for s in only.train + only.val} == {"Spikycat"}


def test_suspect_samples_are_left_out_of_both_splits_and_listed_once(pets, tmp_path):
    erase_pet(pets, "Roundcat_1")  # in trainval
    erase_pet(pets, "lumpy_dog_2")  # in test
    (pets / "images" / "Spikycat_1.jpg").write_bytes(b"not a photo")
    config = resolve_config("unet_diy", str(pets), str(tmp_path / "run"), train_split="all")
    splits = load_splits(config)
    bad = {"Roundcat_1", "lumpy_dog_2", "Spikycat_1"}
    assert sorted(found.sample.name for found in splits.left_out) == sorted(bad)  # once each, in train and val
    assert not bad & {s.name for s in splits.train + splits.val}
    assert len(splits.train) == 24 - 3
    reasons = {found.sample.name: found.reason for found in splits.left_out}
    assert "no pet pixels" in reasons["Roundcat_1"] and "Spikycat_1.jpg" in reasons["Spikycat_1"]
    kept = load_splits(resolve_config("unet_diy", str(pets), str(tmp_path / "run"), train_split="all",
                                      keep_suspect=True))
    # Kept on purpose: the suspect labels; a photo that cannot be read is never trained on.
    assert [found.sample.name for found in kept.left_out] == ["Spikycat_1"] and len(kept.train) == 24 - 1


def test_photos_in_both_lists_are_named_in_the_validation_source(pets, tmp_path):
    """Validating on photos also trained on inflated the figures without a word (`data check` flags them)."""
    trainval = pets / "annotations" / "trainval.txt"
    test_lines = (pets / "annotations" / "test.txt").read_text().splitlines()
    trainval.write_text(trainval.read_text() + "\n".join(test_lines[:2]) + "\n")
    splits = load_splits(resolve_config("unet_diy", str(pets), str(tmp_path / "run")))
    assert splits.val_source == "the dataset's test list (2 of its photos are also in trainval: not held out)"
    plain = load_splits(resolve_config("unet_diy", str(pets), str(tmp_path / "run"), train_split="all"))
    assert "(also trained on: a fit check" in plain.val_source


def test_a_validation_set_left_without_images_names_why(pets, tmp_path):
    """It said "the dataset has no samples (check the folder and the split)"."""
    test_names = [line.split()[0] for line in (pets / "annotations" / "test.txt").read_text().splitlines()]
    for name in test_names:
        erase_pet(pets, name)
    with pytest.raises(PetsegError) as raised:
        load_splits(resolve_config("unet_diy", str(pets), str(tmp_path / "run")))
    message = str(raised.value)
    assert message.startswith(f"{pets}: every validation image (the dataset's test list) was left out as unfit; first: ")
    assert "no pet pixels" in message


@pytest.mark.slow  # one tiny training run through the CLI
def test_train_header_counts_the_images_used_and_lists_the_left_out(pets, tmp_path):
    erase_pet(pets, "Roundcat_1")
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "petseg", "train", "--model", "unet_diy", "--width", "4", "--data", str(pets),
         "--out", str(out), "--epochs", "1", "--image-size", "32", "--batch-size", "4", "--no-progress",
         "--exclude-breeds", "LONG_DOG"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # trainval holds 12 toy photos, 3 per breed: long_dog's 3 and Roundcat_1 are not used.
    assert lines[0].startswith("training unet_diy (default recipe; encoder randomly initialised) on 8 images")
    left_out = [line for line in lines if line.startswith("left out")]
    assert left_out == [f"left out Roundcat_1: {pets}/annotations/trimaps/Roundcat_1.png: the mask has no pet "
                        "pixels (--keep-suspect keeps it)"]
    assert "UserWarning" not in result.stderr


def test_unknown_breed_flag_fails_in_one_line(toy_data, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "petseg", "train", "--model", "unet_diy", "--data", str(toy_data),
         "--out", str(tmp_path / "run"), "--breeds", "Abyssinian"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"error: unknown breed 'Abyssinian'; breeds in this dataset: {', '.join(TOY_BREEDS)}"]


@pytest.mark.shared_data
@pytest.mark.slow  # decodes the 450 photos
def test_the_sample_s_only_suspect_is_abyssinian_34(shared_sample):
    unfit = find_unfit(load_samples(shared_sample, "all"))
    assert [(found.sample.name, found.broken, "no pet pixels" in found.reason) for found in unfit] == [
        ("Abyssinian_34", False, True)]
    assert breeds_in(load_samples(shared_sample, "all")) == ["Abyssinian", "american_bulldog", "Bengal"]


def test_pretrained_is_the_default_where_imagenet_weights_are_offline(tmp_path):
    lite = resolve_config("unet_efficientnet_lite2", "data", "out")
    assert lite.pretrained and lite.encoder_lr_factor == 0.1
    assert not resolve_config("unet_efficientnet_lite0", "data", "out", pretrained=False).pretrained
    assert not resolve_config("unet_efficientnet_lite0", "data", "out", weights=str(tmp_path / "w.pth")).pretrained
    assert not resolve_config("unet_mobilenetv2", "data", "out").pretrained  # hub weights need the network
    assert not resolve_config("unet_diy", "data", "out").pretrained


def test_the_encoder_start_names_the_imagenet_file_or_says_random(tmp_path):
    from petseg.models.lite import VARIANTS, package_checkpoint_path
    from petseg.models.pretrained import describe_encoder_start

    lite1_file = package_checkpoint_path(VARIANTS["tf_efficientnet_lite1"])
    assert describe_encoder_start("unet_efficientnet_lite1", True, None) == f"encoder from ImageNet weights {lite1_file}"
    assert describe_encoder_start("unet_efficientnet_lite1", False, None) == "encoder randomly initialised"
    weights = tmp_path / "w.safetensors"
    assert describe_encoder_start("unet_mobilenetv2", False, weights) == f"encoder from the weights file {weights}"
