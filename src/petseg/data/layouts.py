"""Find the (photo, mask) pairs of a dataset folder, for a split.

Two layouts:
- oxford: the official Oxford-IIIT Pet layout, `images/<Name>.jpg`,
  `annotations/trimaps/<Name>.png` and the split lists `annotations/{list,trainval,test}.txt`.
- folder: users' own data, `images/<stem>.<ext>` + `masks/<stem>.<ext>`, with the mask
  values mapped to classes by `classes.json` / `classes.yaml` in the root or by the
  caller (`label_map`, e.g. from `--mask-values 0=background,255=pet`). Optional
  `trainval.txt` / `test.txt` in the root list stems (with only one of them, the other
  split is every image it does not list); without either a stable hash of each stem
  puts one image in five in `test`.
"""

from __future__ import annotations

import os
import re
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from petseg.data.decode import load_labels, load_rgb, open_image
from petseg.data.labels import CLASS_NAMES, IGNORE_INDEX
from petseg.errors import ImageError, LabelError, PetsegError, clipped, quoted
from petseg.text_files import parse_json, read_text_file

SPLITS = ("trainval", "test", "all")
LAYOUTS = ("auto", "oxford", "folder")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
LABEL_MAP_FILES = ("classes.json", "classes.yaml", "classes.yml")
# Mapped to IGNORE_INDEX: pixels that count in neither loss nor metrics.
IGNORE_NAMES = ("ignore", "void")

LabelMap = tuple[tuple[int, int], ...]

# A class mapping has one entry per mask value, at most 65536, each two values (mask value
# and class) and under 32 bytes of text; a larger file is not one. A few hundred bytes of YAML
# aliases stand for billions of values, so aliases are refused.
MAX_LABEL_MAP_BYTES = 4 * 2**20
MAX_LABEL_MAP_VALUES = 2 * 65536 + 1


@dataclass(frozen=True)
class Sample:
    """One photo and its mask. `label_map` (mask value -> class) is None for Oxford trimaps."""

    name: str
    image_path: Path
    mask_path: Path
    label_map: LabelMap | None = None


def load_mask(sample: Sample) -> np.ndarray:
    """A sample's mask as class indices (H, W) uint8: 0 pet, 1 background, 2 border, 255 ignored."""
    if sample.label_map is None:
        return load_labels(sample.mask_path)
    image = open_image(sample.mask_path)  # the photos' pixel limit: a 164 KB PNG can be 13000 x 13000
    if image.mode not in ("L", "P", "I", "I;16", "F"):
        # Masks saved as RGB gray-scale are common; 1-bit masks read as 0/1 booleans
        # otherwise, while their mapping (like the pixels they were drawn with) says 0/255.
        try:
            image = image.convert("L")
        except Exception as error:  # modes Pillow has no gray for: La (a TIFF's premultiplied alpha), LAB
            raise LabelError(f"{sample.mask_path}: a mask in mode {image.mode} has no gray levels to read "
                             f"({error}); save it as a gray-scale image") from None
    values = np.asarray(image)  # its own 8, 16 or 32 bits: int64 would be 8 bytes a pixel
    lookup = dict(sample.label_map)
    # A float mask is checked as it is: converted to L, NaN and 0.5 became 0, a class.
    unknown = np.setdiff1d(np.unique(values), list(lookup))
    if unknown.size:
        kind = " (a floating-point mask)" if values.dtype.kind == "f" else ""
        raise LabelError(f"{sample.mask_path}: mask values {unknown[:5].tolist()} are not in the class mapping{kind}")
    if values.dtype.kind == "f":  # whole numbers of the mapping by now, each at most 65535
        values = values.astype(np.uint16)
    table = np.full(int(values.max()) + 1, IGNORE_INDEX, dtype=np.uint8)
    for value, label in lookup.items():
        if value < table.size:
            table[value] = label
    return table[values]


def load_sample(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    """Decode a photo (H, W, 3) uint8 and its mask (H, W) uint8, checking they line up."""
    mask = load_mask(sample)
    image = load_rgb(sample.image_path)
    if image.shape[:2] != mask.shape:
        # Masks are drawn on the stored pixels: when the photo's EXIF rotation turns it
        # away from its mask, the stored orientation is the one that matches.
        unrotated = load_rgb(sample.image_path, exif=False)
        if unrotated.shape[:2] != mask.shape:
            height, width = image.shape[:2]
            raise ImageError(
                f"{sample.image_path}: photo is {width}x{height} but its mask {sample.mask_path.name} "
                f"is {mask.shape[1]}x{mask.shape[0]}"
            )
        image = unrotated
    return image, mask


def _whole(value) -> int | None:
    """An int, a float with no fraction or a text of digits as an int; None for anything else
    (0.5, True, infinity, "255.7": int() would turn them into other numbers or fail)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d{1,9}\s*", value):
        return int(value)
    return None


def _class_index(label, source: str) -> int:
    if isinstance(label, str) and label.strip().lower() in CLASS_NAMES:
        return CLASS_NAMES.index(label.strip().lower())
    if isinstance(label, str) and label.strip().lower() in IGNORE_NAMES:
        return IGNORE_INDEX
    index = _whole(label)
    if index not in (*range(len(CLASS_NAMES)), IGNORE_INDEX):
        raise PetsegError(f"{source}: class {quoted(label)} must be one of {', '.join((*CLASS_NAMES, *IGNORE_NAMES))} or 0-2")
    return index


def normalize_label_map(mapping: Mapping, source: str = "label map") -> LabelMap:
    """{mask value: class name or index} -> sorted ((value, class index), ...)."""
    if not isinstance(mapping, Mapping) or not mapping:
        raise PetsegError(f"{source}: expected a non-empty mapping of mask value -> class")
    pairs = {}
    for given, label in mapping.items():
        value = _whole(given)
        if value is None:
            raise PetsegError(f"{source}: mask value {quoted(given)} is not an integer")
        if not 0 <= value <= 65535:
            raise PetsegError(f"{source}: mask value {value} is outside 0..65535")
        if value in pairs:  # "255" and "0255", or 255 and "255 ": one value, two classes
            raise PetsegError(f"{source}: mask value {value} is given twice")
        pairs[value] = _class_index(label, source)
    return tuple(sorted(pairs.items()))


def parse_label_map(text: str) -> LabelMap:
    """`0=background,255=pet,128=border` (the --mask-values flag) -> a label map."""
    mapping = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        value, separator, label = item.partition("=")
        if not separator:
            raise PetsegError(f"mask values: {clipped(item)!r} should look like VALUE=CLASS, e.g. 255=pet")
        if value.strip() in mapping:
            raise PetsegError(f"mask values: {clipped(value.strip())!r} is given twice")
        mapping[value.strip()] = label.strip()
    return normalize_label_map(mapping, "mask values")


def read_label_map_file(path: str | Path) -> LabelMap:
    """A JSON or YAML file holding {mask value: class}."""
    path = Path(path)
    text = read_text_file(path, "class mapping", max_bytes=MAX_LABEL_MAP_BYTES)
    mapping = parse_json(text, path) if path.suffix.lower() == ".json" else _parse_label_map_yaml(text, path)
    return normalize_label_map(mapping, str(path))


def _parse_label_map_yaml(text: str, path: Path):
    """yaml.safe_load, refusing aliases and more than MAX_LABEL_MAP_VALUES values as they are read."""
    import yaml

    class BoundedLoader(yaml.SafeLoader):
        values = 0

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                raise PetsegError(f"{path}: a class mapping may not use YAML aliases "
                                  f"(*{clipped(self.peek_event().anchor)})")
            self.values += 1
            if self.values > MAX_LABEL_MAP_VALUES:
                raise PetsegError(f"{path}: over {MAX_LABEL_MAP_VALUES} YAML values, more than a class mapping has "
                                  "(a mask value and a class per entry)")
            return super().compose_node(parent, index)

    loader = BoundedLoader(text)
    try:
        return loader.get_single_data()
    except RecursionError:
        raise PetsegError(f"{path}: not valid YAML (nested too deeply)") from None
    except yaml.YAMLError as error:
        raise PetsegError(f"{path}: not valid YAML ({clipped(str(error).splitlines()[0])})") from None
    except ValueError as error:  # a number of over 4300 digits, a date such as 2024-13-45
        raise PetsegError(f"{path}: not valid YAML ({clipped(str(error))})") from None
    finally:
        loader.dispose()


def detect_layout(root: Path) -> str:
    if (root / "images").is_dir() and (root / "annotations" / "trimaps").is_dir():
        return "oxford"
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return "folder"
    raise PetsegError(
        f"{root}: not a dataset folder (expected images/ + annotations/trimaps/, "
        "the Oxford-IIIT Pet layout, or images/ + masks/)"
    )


def read_split_list(path: Path) -> list[str]:
    """Names from an Oxford list file: the first word of each line, '#' lines skipped, each
    name once (listed twice, a photo would count twice in a score)."""
    names = []
    for line in read_text_file(path, "list file").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            names.append(line.split()[0])
    return list(dict.fromkeys(names))


def all_files_by_stem(folder: Path) -> dict[str, list[Path]]:
    """Image files by stem, each stem's files in name order (cat_1.jpg, cat_1.png); macOS '._'
    resource forks (found in the official tarballs) are not images, nor is anything but a regular file."""
    files: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith("._"):
            files.setdefault(path.stem, []).append(path)
    return files


def files_by_stem(folder: Path) -> dict[str, Path]:
    """Image files by stem: of two that share one, the first in name order (see `all_files_by_stem`)."""
    return {stem: paths[0] for stem, paths in all_files_by_stem(folder).items()}


def _used_files(folder: Path) -> dict[str, Path]:
    """`files_by_stem`, with a warning when files share a stem: which one is meant is a guess."""
    files = all_files_by_stem(folder)
    shared = [[path.name for path in paths] for paths in files.values() if len(paths) > 1]
    if shared:
        more = f" ({len(shared) - 1} more names are shared likewise)" if len(shared) > 1 else ""
        warnings.warn(f"{folder}: {', '.join(shared[0])} share a name; only {shared[0][0]} is used{more}",
                      stacklevel=3)
    return {stem: paths[0] for stem, paths in files.items()}


def _select(names: list[str], images: dict[str, Path], masks: dict[str, Path], label_map, root: Path) -> list[Sample]:
    missing = [name for name in names if name not in images or name not in masks]
    if missing:
        warnings.warn(f"{root}: {len(missing)} listed images have no photo or mask and are left out "
                      f"(first: {clipped(missing[0])})", stacklevel=3)
    return [Sample(name, images[name], masks[name], label_map) for name in names if name in images and name in masks]


def _oxford_samples(root: Path, split: str) -> list[Sample]:
    images = _used_files(root / "images")
    trimaps = _used_files(root / "annotations" / "trimaps")
    if split == "all":
        return _select(sorted(name for name in images if name in trimaps), images, trimaps, None, root)
    list_path = root / "annotations" / f"{split}.txt"
    if not os.path.lexists(list_path):  # anything else there (a device, a folder) is read, and refused, as such
        raise PetsegError(f"{list_path}: split list not found (use split 'all' for every image with a trimap)")
    return _select(read_split_list(list_path), images, trimaps, None, root)


def in_folder_test_split(name: str) -> bool:
    """Stable across runs and machines, and unchanged when images are added."""
    return zlib.crc32(name.encode()) % 5 == 0


def _folder_samples(root: Path, split: str, label_map: LabelMap | None) -> list[Sample]:
    if label_map is None:
        found = [root / name for name in LABEL_MAP_FILES if (root / name).is_file()]
        if not found:
            raise PetsegError(
                f"{root}: masks/ needs a class mapping",
                advice='add classes.json (e.g. {{"0": "background", "255": "pet"}}) or give {mask_values} 0=background,255=pet',
            )
        label_map = read_label_map_file(found[0])
    images = _used_files(root / "images")
    masks = _used_files(root / "masks")
    if split == "all":
        return _select(sorted(name for name in images if name in masks), images, masks, label_map, root)
    list_path = root / f"{split}.txt"
    if list_path.is_file():
        return _select(read_split_list(list_path), images, masks, label_map, root)
    other_path = root / ("test.txt" if split == "trainval" else "trainval.txt")
    if other_path.is_file():
        # Only the other split is listed: this one is every other image, so the two never overlap.
        listed = set(read_split_list(other_path))
        return _select(sorted(name for name in images if name in masks and name not in listed),
                       images, masks, label_map, root)
    wanted = split == "test"
    names = sorted(name for name in images if name in masks and in_folder_test_split(name) == wanted)
    return _select(names, images, masks, label_map, root)


def check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise PetsegError(f"layout {quoted(layout)} is not one of {', '.join(LAYOUTS)}")


def load_samples(
    root: str | Path,
    split: str = "trainval",
    *,
    layout: str = "auto",
    label_map: Mapping | LabelMap | None = None,
) -> list[Sample]:
    """The samples of `split` ('trainval', 'test' or 'all') in a dataset folder."""
    root = Path(root)
    if split not in SPLITS:
        raise PetsegError(f"split {quoted(split)} is not one of {', '.join(SPLITS)}")
    check_layout(layout)
    if not root.is_dir():
        raise PetsegError(f"{root}: dataset folder not found")
    if layout == "auto":
        layout = detect_layout(root)
    if isinstance(label_map, Mapping):
        label_map = normalize_label_map(label_map)
    if layout == "oxford":
        if label_map is not None:
            raise PetsegError(f"{root}: a class mapping applies to the images/ + masks/ layout, not to Oxford trimaps")
        return _oxford_samples(root, split)
    return _folder_samples(root, split, label_map)
