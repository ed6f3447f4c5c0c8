"""The Dataset: letterboxed, normalised items; the disk cache; unreadable files; augmentation."""

import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import petseg.data.cache as cache_module
from petseg.data.augment import Augment
from petseg.data.cache import default_cache_dir
from petseg.data.dataset import SegmentationDataset, make_loader
from petseg.data.labels import IGNORE_INDEX
from petseg.data.layouts import load_sample, load_samples
from petseg.data.letterbox import Letterbox, mean_fill
from petseg.errors import PetsegError, command_line_flag

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SIZE = 64


@pytest.fixture
def pets(toy_data, tmp_path):
    """A private copy of the toy data that a test may change."""
    return shutil.copytree(toy_data, tmp_path / "pets")


@pytest.fixture
def decode_calls(monkeypatch):
    """Counts how many samples are decoded from their files."""
    calls = []

    def counting_load_sample(sample):
        calls.append(sample.name)
        return load_sample(sample)

    monkeypatch.setattr(cache_module, "load_sample", counting_load_sample)
    return calls


def _dataset(root, tmp_path, **options):
    return SegmentationDataset(load_samples(root, "all"), SIZE, MEAN, STD, cache_dir=tmp_path / "cache", **options)


def test_items_are_letterboxed_normalised_squares(toy_data, tmp_path):
    dataset = _dataset(toy_data, tmp_path)
    assert len(dataset) == 24
    for position in range(4):
        image, mask = dataset[position]
        assert image.dtype == torch.float32 and image.shape == (3, SIZE, SIZE)
        assert mask.dtype == torch.int64 and mask.shape == (SIZE, SIZE)
        photo, labels = load_sample(dataset.samples[position])
        box = Letterbox.fit(*labels.shape, SIZE)
        np.testing.assert_array_equal(mask.numpy(), box.apply_mask(labels))
        padding = mask == IGNORE_INDEX
        if labels.shape[0] != labels.shape[1]:
            assert padding.any()
        # Padding is the mean colour, which normalises to (almost) zero.
        assert image[:, padding].abs().max() < 0.02
        expected = (box.apply_image(photo, mean_fill(MEAN)) / 255.0 - np.array(MEAN)) / np.array(STD)
        np.testing.assert_allclose(image.permute(1, 2, 0).numpy(), expected, atol=1e-5)


def test_second_dataset_reads_the_cache_without_decoding(toy_data, tmp_path, decode_calls):
    first = _dataset(toy_data, tmp_path)
    first_items = [first[i] for i in range(len(first))]
    assert len(decode_calls) == 24
    second = _dataset(toy_data, tmp_path)
    second_items = [second[i] for i in range(len(second))]
    assert len(decode_calls) == 24, "a cached epoch must not decode files again"
    for (image_a, mask_a), (image_b, mask_b) in zip(first_items, second_items):
        assert torch.equal(image_a, image_b) and torch.equal(mask_a, mask_b)
    uncached = SegmentationDataset(load_samples(toy_data, "all"), SIZE, MEAN, STD, cache=False)
    image, mask = uncached[5]
    assert torch.equal(image, first_items[5][0]) and torch.equal(mask, first_items[5][1])
    assert len(decode_calls) == 25


def test_changed_file_invalidates_the_cache(pets, tmp_path, decode_calls):
    dataset = _dataset(pets, tmp_path)
    sample = dataset.samples[3]
    assert (dataset[3][1] == 0).any()
    all_background = np.full(np.asarray(Image.open(sample.mask_path)).shape, 2, dtype=np.uint8)
    Image.fromarray(all_background).save(sample.mask_path)
    stat = sample.mask_path.stat()
    os.utime(sample.mask_path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    calls_before = len(decode_calls)
    refreshed = _dataset(pets, tmp_path)
    assert not (refreshed[3][1] == 0).any()
    assert len(decode_calls) == calls_before + 1
    assert len(list((tmp_path / "cache").iterdir())) == 1, "the stale cache folder is replaced, not kept"


def _plant(folder: Path, damage: str) -> None:
    """Damage a built cache folder as a crafted or broken one would be."""
    meta = folder / "meta.json"
    if damage == "a list for a record":
        meta.write_text("[]")
    elif damage == "JSON nested 100,000 deep":
        meta.write_text("[" * 100_000 + "]" * 100_000)
    elif damage == "a FIFO for a record":
        meta.unlink()
        os.mkfifo(meta)
    elif damage == "images of another shape":
        np.save(folder / "images.npy", np.zeros((2, 3, 3, 3), np.uint8))
    elif damage == "an object array":
        np.save(folder / "state.npy", np.array([None] * 24, dtype=object), allow_pickle=True)


@pytest.mark.parametrize("damage", ["a list for a record", "JSON nested 100,000 deep", "a FIFO for a record",
                                    "images of another shape", "an object array"])
def test_a_damaged_or_planted_cache_is_rebuilt(toy_data, tmp_path, decode_calls, damage):
    """Each gave a traceback (AttributeError, RecursionError, IndexError, ValueError) or hung on the FIFO."""
    first = _dataset(toy_data, tmp_path)
    expected = [first[index] for index in range(3)]
    [folder] = (tmp_path / "cache").iterdir()
    _plant(folder, damage)
    calls_before = len(decode_calls)
    rebuilt = _dataset(toy_data, tmp_path)
    for index, (image, mask) in enumerate(expected):
        again = rebuilt[index]
        assert torch.equal(again[0], image) and torch.equal(again[1], mask)
    assert len(decode_calls) == calls_before + 3, "the damaged cache was not used"


def test_unreadable_files_are_skipped_and_counted(pets, tmp_path):
    samples = load_samples(pets, "all")
    samples[2].image_path.write_bytes(samples[2].image_path.read_bytes()[:300])  # truncated JPEG
    samples[7].image_path.write_bytes(b"not an image at all")
    dataset = _dataset(pets, tmp_path)
    with pytest.warns(UserWarning, match="skipped unreadable file"):
        batches = list(make_loader(dataset, batch_size=5, shuffle=False))
    assert sum(len(masks) for _, masks in batches) == 24  # the epoch went on, batches kept their size
    skipped = dict(dataset.skipped)
    assert set(skipped) == {samples[2].image_path, samples[7].image_path}
    assert str(samples[7].image_path) in skipped[samples[7].image_path]
    # The next run knows them from the cache: left out from the start, with a warning count.
    with pytest.warns(UserWarning, match="2 unreadable files skipped"):
        again = _dataset(pets, tmp_path)
    assert len(again) == 22 and len(again.skipped) == 2
    uncached = SegmentationDataset(samples, SIZE, MEAN, STD, cache=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert uncached[2][1].shape == (SIZE, SIZE)
    assert [path for path, _ in uncached.skipped] == [samples[2].image_path]


def test_workers_fill_one_shared_cache_and_shuffle_follows_the_seed(toy_data, tmp_path):
    dataset = _dataset(toy_data, tmp_path)

    def epoch(seed, workers):
        loader = make_loader(dataset, batch_size=4, shuffle=True, workers=workers, seed=seed)
        return torch.cat([masks for _, masks in loader])

    first = epoch(seed=1, workers=2)
    assert dataset.source.ready_count() == 24, "workers write into the same memory-mapped cache"
    assert torch.equal(first, epoch(seed=1, workers=0))
    assert not torch.equal(first, epoch(seed=2, workers=0))


def test_default_cache_dir_follows_the_environment(toy_data, tmp_path, monkeypatch):
    monkeypatch.setenv("PETSEG_CACHE_DIR", str(tmp_path / "env-cache"))
    assert default_cache_dir() == tmp_path / "env-cache"
    dataset = SegmentationDataset(load_samples(toy_data, "test"), SIZE, MEAN, STD)
    assert dataset.source.folder.parent == tmp_path / "env-cache"
    monkeypatch.delenv("PETSEG_CACHE_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "petseg"


def test_a_cache_that_cannot_be_built_is_one_line_and_leaves_nothing(toy_data, tmp_path, monkeypatch):
    import errno

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np.lib.format, "open_memmap", full_disk)
    with pytest.raises(PetsegError, match=r"cannot build the dataset cache \(No space left on device\)") as raised:
        SegmentationDataset(load_samples(toy_data, "test"), SIZE, MEAN, STD, cache_dir=tmp_path / "cache")
    assert str(tmp_path / "cache") in str(raised.value)
    assert raised.value.worded(command_line_flag).endswith("choose another folder with --cache-dir or PETSEG_CACHE_DIR")
    assert list((tmp_path / "cache").iterdir()) == [], "the half-built cache folder was left behind"


def test_empty_sample_list_is_a_clear_error():
    with pytest.raises(PetsegError, match="no samples"):
        SegmentationDataset([], SIZE, MEAN, STD)


def test_dataset_augments_differently_each_time(toy_data, tmp_path):
    torch.manual_seed(0)
    dataset = _dataset(toy_data, tmp_path, augment=Augment(hflip=True, scale=(0.7, 1.3)))
    masks = [dataset[0][1] for _ in range(6)]
    assert any(not torch.equal(masks[0], other) for other in masks[1:])
    assert all(set(m.unique().tolist()) <= {0, 1, 2, IGNORE_INDEX} for m in masks)


def test_unreadable_validation_image_is_ignored_not_replaced(pets, tmp_path):
    samples = load_samples(pets, "all")[:3]
    samples[1].image_path.write_bytes(b"not an image at all")
    validation = SegmentationDataset(samples, SIZE, MEAN, STD, cache_dir=tmp_path / "cache")
    with pytest.warns(UserWarning, match="skipped unreadable file"):
        image, mask = validation[1]
    assert (mask == IGNORE_INDEX).all() and image.shape == (3, SIZE, SIZE)
    assert torch.allclose(image, torch.zeros_like(image), atol=0.01)  # the letterbox padding colour
    training = SegmentationDataset(samples, SIZE, MEAN, STD, augment=Augment(hflip=False), cache=False)
    with pytest.warns(UserWarning, match="skipped unreadable file"):
        replaced = training[1][1]
    assert len(training) == 3 and not (replaced == IGNORE_INDEX).all()  # training keeps its batch full instead


def test_cache_key_does_not_depend_on_how_the_path_is_spelled(toy_data, tmp_path, monkeypatch):
    absolute = _dataset(toy_data, tmp_path)
    monkeypatch.chdir(toy_data.parent)
    relative = _dataset(Path(toy_data.name), tmp_path)
    assert not relative.samples[0].image_path.is_absolute()
    assert relative.source.folder == absolute.source.folder


def test_loader_workers_persist_only_when_asked(toy_data, tmp_path):
    dataset = _dataset(toy_data, tmp_path)
    assert not make_loader(dataset, batch_size=4, shuffle=False, workers=1).persistent_workers
    assert make_loader(dataset, batch_size=4, shuffle=False, workers=1, persistent=True).persistent_workers
    assert not make_loader(dataset, batch_size=4, shuffle=False, workers=0, persistent=True).persistent_workers
