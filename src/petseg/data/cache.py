"""Decoded, letterboxed samples: decoded on demand, or kept in a memory-mapped disk cache.

Decoding a JPEG and resizing it costs far more than the rest of a training step on a
small model, and every epoch does it again. The disk cache stores each sample once
as uint8 arrays at the model's input size (numpy .npy files, memory-mapped), so the
epochs after the first, and the next runs, only copy bytes.

A cache folder holds one sample list at one size and padding colour; its name is a
hash of those. A fingerprint of every file's size and mtime is stored beside the
arrays: when a file changes, the folder is rebuilt. Entries are filled lazily by
whichever process reads them first (DataLoader workers included) and a state byte
per sample says ready / unreadable, written after the arrays.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from petseg import __version__
from petseg.data.layouts import Sample, load_sample
from petseg.data.letterbox import Letterbox
from petseg.data.decode import not_a_regular_file
from petseg.errors import PetsegError, clipped
from petseg.text_files import parse_json, read_text_file

NOT_YET, READY, UNREADABLE = 0, 1, 2
_ARRAYS = ("images", "masks", "state")
# What the cache writes in meta.json and in a note on an unreadable sample is far shorter.
MAX_META_BYTES = 64 * 1024
MAX_NOTE_BYTES = 16 * 1024
# The cache folder comes from the training config's cache_dir (--cache-dir), else PETSEG_CACHE_DIR.
CACHE_ADVICE = "choose another folder with {cache_dir} or PETSEG_CACHE_DIR"


def default_cache_dir() -> Path:
    """$PETSEG_CACHE_DIR, else ~/.cache/petseg."""
    configured = os.environ.get("PETSEG_CACHE_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "petseg"


class DecodedSamples:
    """Samples decoded and letterboxed on every request; unreadable ones remembered in memory."""

    def __init__(self, samples: Sequence[Sample], size: int, fill: Sequence[int]):
        self.samples = list(samples)
        self.size = size
        self.fill = tuple(int(channel) for channel in fill)
        self._unreadable: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def decode(self, index: int) -> tuple[np.ndarray, np.ndarray] | str:
        """(image (S, S, 3), mask (S, S)) uint8, or the reason the sample cannot be read."""
        try:
            image, mask = load_sample(self.samples[index])
        except PetsegError as error:
            return str(error)
        box = Letterbox.fit(mask.shape[0], mask.shape[1], self.size)
        return box.apply_image(image, self.fill), box.apply_mask(mask)

    def get(self, index: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The letterboxed pair, or None for an unreadable sample (see `unreadable()`)."""
        if index in self._unreadable:
            return None
        result = self.decode(index)
        if isinstance(result, str):
            self._unreadable[index] = result
            return None
        return result

    def unreadable(self) -> dict[int, str]:
        """{sample index: reason} for the samples found unreadable so far."""
        return dict(self._unreadable)


class DiskCache(DecodedSamples):
    """The same pairs, decoded once and then read from memory-mapped .npy files."""

    def __init__(self, samples: Sequence[Sample], size: int, fill: Sequence[int], cache_dir: str | Path | None = None):
        super().__init__(samples, size, fill)
        if not self.samples:
            raise PetsegError("cannot cache an empty sample list")
        root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        identity = json.dumps(
            [__version__, size, self.fill, [(str(s.image_path.resolve()), str(s.mask_path.resolve()), s.label_map) for s in self.samples]]
        )
        dataset_name = self.samples[0].image_path.resolve().parent.parent.name or "dataset"
        self.folder = root / f"{dataset_name}-{size}px-{hashlib.sha1(identity.encode()).hexdigest()[:16]}"
        self._arrays: dict[str, np.memmap] | None = None
        self._open_or_build(root)

    def _fingerprint(self) -> str:
        def stat(path: Path) -> tuple[int, int]:
            try:
                info = path.stat()
            except OSError:
                return (-1, -1)  # a missing file is read, found unreadable, and reported
            return (info.st_size, info.st_mtime_ns)

        stats = [(stat(sample.image_path), stat(sample.mask_path)) for sample in self.samples]
        return hashlib.sha1(json.dumps(stats).encode()).hexdigest()

    def _shapes(self) -> dict[str, tuple[int, ...]]:
        count, size = len(self.samples), self.size
        return {"images": (count, size, size, 3), "masks": (count, size, size), "state": (count,)}

    def _is_current(self, fingerprint: str) -> bool:
        """Whether the folder holds this cache, whole. Anything else there (a stale cache, damage, a
        planted file: JSON nested 100,000 deep, a FIFO, arrays of other shapes) is rebuilt over."""
        try:
            meta = parse_json(read_text_file(self.folder / "meta.json", "cache record", max_bytes=MAX_META_BYTES),
                              self.folder / "meta.json")
        except PetsegError:
            return False
        return isinstance(meta, dict) and meta.get("fingerprint") == fingerprint and self._arrays_fit()

    def _arrays_fit(self) -> bool:
        for name, shape in self._shapes().items():
            path = self.folder / f"{name}.npy"
            if not_a_regular_file(path):
                return False
            try:
                array = np.load(path, mmap_mode="r")  # the header only; object arrays refuse to map
            except (OSError, ValueError, EOFError):
                return False
            if array.shape != shape or array.dtype != np.uint8:
                return False
        return True

    def _open_or_build(self, root: Path) -> None:
        fingerprint = self._fingerprint()
        if self._is_current(fingerprint):
            return
        try:
            root.mkdir(parents=True, exist_ok=True)
            building = Path(tempfile.mkdtemp(prefix=f".{self.folder.name}.", dir=root))
        except OSError as error:
            raise PetsegError(f"{clipped(str(root))}: cannot create the dataset cache ({error.strerror or error})",
                              advice=CACHE_ADVICE) from None
        count, size = len(self.samples), self.size
        try:
            # Sparse files: disk is used only as entries are filled.
            for name, shape in self._shapes().items():
                np.lib.format.open_memmap(building / f"{name}.npy", mode="w+", dtype=np.uint8, shape=shape).flush()
            (building / "meta.json").write_text(json.dumps({"fingerprint": fingerprint, "count": count, "size": size}))
            (building / "unreadable").mkdir()
        except OSError as error:  # a full disk, a file-size limit
            shutil.rmtree(building, ignore_errors=True)
            raise PetsegError(f"{clipped(str(root))}: cannot build the dataset cache ({error.strerror or error})",
                              advice="free some space, or " + CACHE_ADVICE) from None
        if self._is_current(fingerprint):  # another process (a DDP rank) built it meanwhile
            shutil.rmtree(building, ignore_errors=True)
            return
        if self.folder.exists():
            shutil.rmtree(self.folder, ignore_errors=True)  # stale: its files changed
        try:
            os.replace(building, self.folder)
        except OSError:
            shutil.rmtree(building, ignore_errors=True)
            if not self._is_current(fingerprint):  # another process won the race with a current cache, or not
                raise PetsegError(f"{self.folder}: cannot set up the dataset cache") from None

    def _open(self) -> dict[str, np.memmap]:
        # Opened lazily per process, so DataLoader workers map the files themselves.
        if self._arrays is None:
            self._arrays = {name: np.load(self.folder / f"{name}.npy", mmap_mode="r+") for name in _ARRAYS}
        return self._arrays

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_arrays"] = None  # never pickle the mapped arrays into a worker
        return state

    def get(self, index: int) -> tuple[np.ndarray, np.ndarray] | None:
        arrays = self._open()
        state = arrays["state"][index]
        if state == READY:
            return np.array(arrays["images"][index]), np.array(arrays["masks"][index])
        if state == UNREADABLE:
            return None
        result = self.decode(index)
        if isinstance(result, str):
            (self.folder / "unreadable" / f"{index}.txt").write_text(result)
            arrays["state"][index] = UNREADABLE
            return None
        arrays["images"][index], arrays["masks"][index] = result
        arrays["state"][index] = READY  # last: a reader never sees a half-written entry as ready
        return result

    def unreadable(self) -> dict[int, str]:
        """Unreadable samples found by any process that used this cache."""
        found = {}
        for path in (self.folder / "unreadable").glob("*.txt"):
            try:
                found[int(path.stem)] = clipped(read_text_file(path, "cache note", max_bytes=MAX_NOTE_BYTES), 300)
            except (PetsegError, ValueError):
                continue
        return found

    def ready_count(self) -> int:
        return int(np.count_nonzero(self._open()["state"] == READY))
