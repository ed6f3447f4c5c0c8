"""The PyTorch Dataset and DataLoader over a sample list.

Every item is the letterboxed square the model sees at training, evaluation and
inference alike: image float32 (3, S, S) normalised with the encoder's mean/std
(padding normalises to zero), mask int64 (S, S) with IGNORE_INDEX padding.
Unreadable files never stop an epoch: they are skipped, counted and reported.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from petseg.data.augment import Augment
from petseg.data.cache import DecodedSamples, DiskCache
from petseg.data.labels import IGNORE_INDEX
from petseg.data.layouts import Sample
from petseg.data.letterbox import mean_fill, normalize
from petseg.errors import PetsegError


class SegmentationDataset(Dataset):
    """(image, mask) pairs of `samples` at `image_size`.

    cache_dir: where the decoded-sample cache lives (default $PETSEG_CACHE_DIR or
    ~/.cache/petseg); cache=False decodes every time instead.

    An unreadable file found mid-epoch is replaced by the next readable sample when
    training (augment given), so batches keep their size; when evaluating it comes
    back as a blank image whose mask is IGNORE_INDEX everywhere, so it counts in no
    metric instead of counting another image twice.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        image_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        augment: Augment | None = None,
        cache_dir: str | Path | None = None,
        *,
        cache: bool = True,
    ):
        if not samples:
            raise PetsegError("the dataset has no samples (check the folder and the split)")
        if image_size < 1:
            raise PetsegError(f"image size must be positive, got {image_size}")
        self.samples = list(samples)
        self.image_size = image_size
        self.mean, self.std = tuple(mean), tuple(std)
        self.augment = augment
        self.replace_unreadable = augment is not None
        self.fill = mean_fill(self.mean)
        if cache:
            self.source: DecodedSamples = DiskCache(self.samples, image_size, self.fill, cache_dir)
        else:
            self.source = DecodedSamples(self.samples, image_size, self.fill)
        known = self.source.unreadable()
        # Known from an earlier pass over the cache: leave them out from the start.
        self._indices = [index for index in range(len(self.samples)) if index not in known]
        self._reported = set(known)
        if known:
            warnings.warn(f"{len(known)} unreadable files skipped (first: {next(iter(known.values()))})", stacklevel=2)

    def __len__(self) -> int:
        return len(self._indices)

    @property
    def skipped(self) -> list[tuple[Path, str]]:
        """(image path, reason) of each unreadable sample found so far."""
        return [(self.samples[index].image_path, reason) for index, reason in sorted(self.source.unreadable().items())]

    def _report(self, index: int) -> None:
        if index not in self._reported:
            self._reported.add(index)
            warnings.warn(f"skipped unreadable file: {self.source.unreadable().get(index, index)}", stacklevel=4)

    def _blank_pair(self) -> tuple[np.ndarray, np.ndarray]:
        image = np.empty((self.image_size, self.image_size, 3), dtype=np.uint8)
        image[:] = np.asarray(self.fill, dtype=np.uint8)
        return image, np.full((self.image_size, self.image_size), IGNORE_INDEX, dtype=np.uint8)

    def _readable_pair(self, position: int) -> tuple[np.ndarray, np.ndarray]:
        if not self.replace_unreadable:
            index = self._indices[position]
            pair = self.source.get(index)
            if pair is None:
                self._report(index)
                return self._blank_pair()
            return pair
        # Training: an unreadable file found mid-epoch is replaced by the next readable
        # sample, so batches keep their size and the epoch goes on.
        for step in range(len(self._indices)):
            index = self._indices[(position + step) % len(self._indices)]
            pair = self.source.get(index)
            if pair is not None:
                return pair
            self._report(index)
        raise PetsegError(f"none of the {len(self._indices)} images could be read (first: {self.skipped[0][1]})")

    def _random_pair(self) -> tuple[np.ndarray, np.ndarray]:
        """Another training sample (copy-paste's background), drawn with torch's generator."""
        return self._readable_pair(int(torch.randint(0, len(self._indices), ()).item()))

    def __getitem__(self, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= position < len(self._indices):
            raise IndexError(position)
        image, mask = self._readable_pair(position)
        if self.augment is not None:
            image, mask = self.augment(image, mask, self.fill, donor=self._random_pair)
        return normalize(image, self.mean, self.std), torch.from_numpy(mask.astype(np.int64))


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    workers: int = 0,
    seed: int = 0,
    sampler: Sampler | None = None,
    drop_last: bool = False,
    persistent: bool = False,
) -> DataLoader:
    """A DataLoader whose shuffling and worker seeds follow `seed`; a sampler (e.g. for DDP) replaces shuffle.

    persistent: keep the worker processes alive between passes, for a loader that is
    iterated again and again (not for one built anew each epoch: its workers would pile up).
    """
    if batch_size < 1:
        raise PetsegError(f"batch_size must be at least 1, got {batch_size}")
    if workers < 0:
        raise PetsegError(f"workers must be 0 or more, got {workers}")
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=workers,
        generator=generator,
        drop_last=drop_last,
        persistent_workers=persistent and workers > 0,
        pin_memory=torch.cuda.is_available(),
    )
