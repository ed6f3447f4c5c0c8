"""`petseg data check`: what is in a dataset folder, and what is wrong with it.

Decodes every photo and mask once (threads: Pillow decodes without the GIL) and
reports split counts, unreadable files with reasons (a FIFO or other special file
named like an image among them), files whose content is not the format their
extension says, files that share a name, multi-frame masks, image/mask size
mismatches, masks without any pet pixels, and how often each class occurs.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from petseg.data.decode import load_rgb, not_a_regular_file, open_lazily, sniff_format
from petseg.data.labels import CLASS_NAMES, PET
from petseg.data.layouts import (
    IMAGE_SUFFIXES,
    LabelMap,
    Sample,
    all_files_by_stem,
    files_by_stem,
    detect_layout,
    load_mask,
    load_samples,
    read_split_list,
)
from petseg.errors import LabelError, PetsegError, clipped, one_line

_FORMAT_OF_SUFFIX = {
    ".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".gif": "GIF", ".bmp": "BMP",
    ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP",
}  # fmt: skip

# Findings that make a dataset unfit to train on as it is (the check exits non-zero).
PROBLEMS = ("unreadable", "mislabelled", "missing", "same_name", "size_mismatches", "in_both_splits")


def _disguise(path: Path) -> dict | None:
    content = sniff_format(path)
    expected = _FORMAT_OF_SUFFIX.get(path.suffix.lower())
    if content is None or content == expected:
        return None  # unreadable files are reported as such
    return {"file": str(path), "extension": path.suffix.lstrip("."), "content": content}


def _is_multi_frame(path: Path) -> bool:
    """An animated PNG or GIF, or a multi-page TIFF: decoding reads its first frame only."""
    try:
        with open_lazily(path, str(path)) as image:
            return bool(getattr(image, "is_animated", False))  # n_frames would walk every TIFF page
    except Exception:  # unreadable files are reported as such
        return False


def _inspect(sample: Sample) -> dict[str, Any]:
    """Decode one pair and return what the report needs from it."""
    finding: dict[str, Any] = {"name": sample.name, "disguised": [], "unreadable": [], "mislabelled": []}
    for path in (sample.image_path, sample.mask_path):
        disguise = _disguise(path)
        if disguise:
            finding["disguised"].append(disguise)
    try:
        image = load_rgb(sample.image_path)
    except PetsegError as error:
        image = None
        finding["unreadable"].append({"file": str(sample.image_path), "reason": str(error)})
    try:
        mask = load_mask(sample)
    except LabelError as error:
        mask = None
        finding["mislabelled"].append({"file": str(sample.mask_path), "reason": str(error)})
    except PetsegError as error:
        mask = None
        finding["unreadable"].append({"file": str(sample.mask_path), "reason": str(error)})
    if mask is not None:
        finding["class_pixels"] = np.bincount(mask.ravel(), minlength=256)
        if _is_multi_frame(sample.mask_path):
            finding["multi_frame"] = {"file": str(sample.mask_path)}
    if image is not None and mask is not None and image.shape[:2] != mask.shape:
        stored = load_rgb(sample.image_path, exif=False)  # annotations follow the stored pixels
        if stored.shape[:2] != mask.shape:
            finding["size_mismatch"] = {
                "name": sample.name,
                "image": [image.shape[1], image.shape[0]],
                "mask": [mask.shape[1], mask.shape[0]],
            }
    return finding


@dataclass(frozen=True)
class Unfit:
    """A sample not to train on, and why. broken: its files cannot be used at all (the
    others, e.g. a mask without pet pixels, can be kept on purpose)."""

    sample: Sample
    reason: str
    broken: bool


def unfit_reason(sample: Sample) -> Unfit | None:
    """Why a sample is unfit to train on (what `check_dataset` reports against it), or None.

    Broken files (unreadable photo or mask, bad mask values, photo and mask of different
    sizes) and masks without a single pet pixel: a model trained on those learns to erase
    the pet.
    """
    finding = _inspect(sample)
    for item in finding["unreadable"] + finding["mislabelled"]:
        return Unfit(sample, item["reason"], broken=True)
    if "size_mismatch" in finding:
        image, mask = finding["size_mismatch"]["image"], finding["size_mismatch"]["mask"]
        reason = f"{sample.image_path}: photo is {image[0]}x{image[1]} but its mask is {mask[0]}x{mask[1]}"
        return Unfit(sample, reason, broken=True)
    if finding["class_pixels"][PET] == 0:
        return Unfit(sample, f"{sample.mask_path}: the mask has no pet pixels", broken=False)
    return None


def find_unfit(samples: Sequence[Sample], workers: int | None = None) -> list[Unfit]:
    """The samples `unfit_reason` finds unfit, in the samples' order."""
    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        return [found for found in pool.map(unfit_reason, samples) if found is not None]


def _mask_folder(root: Path, layout: str) -> Path:
    return root / ("annotations/trimaps" if layout == "oxford" else "masks")


def _special_files(folder: Path) -> dict[str, Path]:
    """Entries named like images that are no regular file (a FIFO, a directory, a broken link): never
    paired, and never opened (a FIFO would block)."""
    special: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith("._") and not path.is_file():
            special.setdefault(path.stem, path)
    return special


def _unpaired(root: Path, layout: str) -> tuple[list[dict], list[dict]]:
    """Photos without a mask and masks without a photo, left out of every split: (missing, unreadable),
    unreadable where the counterpart is there but is not a regular file."""
    missing, unreadable = [], []
    folders = {"image": root / "images", "mask": _mask_folder(root, layout)}
    found = {kind: files_by_stem(folder) for kind, folder in folders.items()}
    for kind, other in (("mask", "image"), ("image", "mask")):
        special = _special_files(folders[kind])
        for name in sorted(set(found[other]) - set(found[kind])):
            if name in special:
                path = special[name]
                unreadable.append({"file": str(path), "reason": f"{path}: {not_a_regular_file(path)}"})
            else:
                missing.append({"name": name, "missing": kind})
    return missing, unreadable


def _same_name(root: Path, layout: str) -> list[dict]:
    """Files that share a stem in images/ or the masks' folder: only the first is used (load_samples warns)."""
    return [{"name": stem, "files": [str(path) for path in paths], "used": str(paths[0])}
            for folder in (root / "images", _mask_folder(root, layout))
            for stem, paths in all_files_by_stem(folder).items() if len(paths) > 1]


def _listed_but_absent(root: Path, layout: str, paired: set[str]) -> list[dict]:
    folder = root / "annotations" if layout == "oxford" else root
    absent = []
    for split in ("trainval", "test"):
        if os.path.lexists(folder / f"{split}.txt"):  # a device or folder there is refused when read, not skipped
            absent += [{"name": n, "missing": f"files (listed in {split}.txt)"}
                       for n in read_split_list(folder / f"{split}.txt") if n not in paired]  # fmt: skip
    return absent


def check_dataset(
    root: str | Path,
    *,
    layout: str = "auto",
    label_map: Mapping | LabelMap | None = None,
    workers: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """A JSON-ready report on the dataset in `root`; report["ok"] is False when it has problems."""
    root = Path(root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # absent listed files are reported below, not warned
        samples = load_samples(root, "all", layout=layout, label_map=label_map)
        split_names = {split: {s.name for s in load_samples(root, split, layout=layout, label_map=label_map)}
                       for split in ("trainval", "test") if _has_split(root, split)}  # fmt: skip
    layout = detect_layout(root) if layout == "auto" else layout
    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        findings = pool.map(_inspect, samples)
        if progress:
            from tqdm import tqdm

            findings = tqdm(findings, total=len(samples), desc="checking", unit="image", disable=None, leave=False)
        findings = list(findings)

    class_pixels = sum((f["class_pixels"] for f in findings if "class_pixels" in f), np.zeros(256, dtype=np.int64))
    labelled = int(class_pixels[: len(CLASS_NAMES)].sum())
    listed = set().union(*split_names.values()) if split_names else set()
    unpaired, special = _unpaired(root, layout)
    report = {
        "root": str(root),
        "layout": layout,
        "images": len(samples),
        "splits": {**{split: len(names) for split, names in split_names.items()}, "all": len(samples)},
        "unlisted": sorted(s.name for s in samples if split_names and s.name not in listed),
        # Trained on and scored on: every validation figure of such a dataset is inflated.
        "in_both_splits": sorted(set.intersection(*split_names.values())) if len(split_names) == 2 else [],
        "readable": sum(1 for f in findings if not f["unreadable"] and not f["mislabelled"]),
        "unreadable": [item for f in findings for item in f["unreadable"]] + special,
        "mislabelled": [item for f in findings for item in f["mislabelled"]],
        "disguised": [item for f in findings for item in f["disguised"]],
        "multi_frame": [f["multi_frame"] for f in findings if "multi_frame" in f],
        "missing": unpaired + _listed_but_absent(root, layout, {s.name for s in samples}),
        "same_name": _same_name(root, layout),
        "size_mismatches": [f["size_mismatch"] for f in findings if "size_mismatch" in f],
        "no_pet_pixels": sorted(f["name"] for f in findings if "class_pixels" in f and f["class_pixels"][PET] == 0),
        "class_pixel_frequencies": {
            name: round(float(class_pixels[index]) / labelled, 6) if labelled else 0.0
            for index, name in enumerate(CLASS_NAMES)
        },
    }
    report["ok"] = not any(report[key] for key in PROBLEMS)
    return report


def _has_split(root: Path, split: str) -> bool:
    return os.path.lexists(root / "annotations" / f"{split}.txt") or (root / "masks").is_dir()


def format_report(report: dict[str, Any]) -> str:
    """The report as a few human-readable lines."""
    splits = ", ".join(f"{split} {count}" for split, count in report["splits"].items())
    lines = [
        f"{report['root']} ({report['layout']} layout): {report['images']} images, {report['readable']} readable",
        f"splits: {splits}",
        "class pixels: " + ", ".join(f"{k} {v:.1%}" for k, v in report["class_pixel_frequencies"].items()),
    ]
    if report["unlisted"]:
        lines.append(f"in no split list ({len(report['unlisted'])}): {', '.join(report['unlisted'])}")
    if report["in_both_splits"]:
        lines.append(f"in both trainval and test ({len(report['in_both_splits'])}): {', '.join(report['in_both_splits'])}")
    for item in report["disguised"]:
        lines.append(f"disguised: {item['file']} is {item['content']}, not {item['extension']}")
    for item in report["multi_frame"]:
        lines.append(f"multi-frame: {item['file']} holds more than one frame; only the first is used")
    for item in report["unreadable"]:
        lines.append(f"unreadable: {item['reason']}")
    for item in report["mislabelled"]:
        lines.append(f"mislabelled: {item['reason']}")
    for item in report["missing"]:
        lines.append(f"missing: {clipped(item['name'])} has no {item['missing']}")  # a list file's line may be megabytes
    for item in report["same_name"]:
        lines.append(f"same name: {', '.join(item['files'])}; only {Path(item['used']).name} is used")
    for item in report["size_mismatches"]:
        lines.append(f"size mismatch: {item['name']} image {item['image'][0]}x{item['image'][1]}, "
                     f"mask {item['mask'][0]}x{item['mask'][1]}")  # fmt: skip
    if report["no_pet_pixels"]:
        lines.append(f"masks with no pet pixels ({len(report['no_pet_pixels'])}): {', '.join(report['no_pet_pixels'])}")
    lines.append("ok" if report["ok"] else "problems found")
    return "\n".join(one_line(line) for line in lines)
