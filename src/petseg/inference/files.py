"""Which files a cutout reads and writes: input expansion, output names, atomic writes.

Outputs are named from their inputs (photo.jpg -> OUT/photo.png, a folder's subfolders
kept below OUT), so nothing is ever written outside OUT, and every file appears under
its final name only once it is complete.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

STDIN = "-"
# Folders are scanned for these; files named explicitly are tried whatever their name.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
_GLOB_CHARACTERS = frozenset("*?[")


@dataclass(frozen=True)
class Job:
    source: Path
    output: Path


@dataclass
class Plan:
    jobs: list[Job]
    skipped: list[Job]  # output exists and --force was not given
    problems: list[str]  # one line each: the input and what is wrong


def _folder_images(folder: Path, recursive: bool, out_dir: Path) -> Iterable[Path]:
    for root, directories, files in os.walk(folder):
        # Never read our own outputs back in when OUT lies inside an input folder.
        directories[:] = [] if not recursive else sorted(
            name for name in directories if (Path(root) / name).resolve() != out_dir.resolve()
        )
        for name in sorted(files):
            if Path(name).suffix.lower() in IMAGE_SUFFIXES and not name.startswith("."):
                yield Path(root) / name


def _expand(argument: str, recursive: bool, out_dir: Path) -> tuple[list[tuple[Path, Path]], str | None]:
    """One INPUT argument -> (source, output path relative to OUT) pairs, or a problem."""
    path = Path(argument)
    if path.is_dir():
        return [(source, source.relative_to(path)) for source in _folder_images(path, recursive, out_dir)], None
    if path.exists():
        return [(path, Path(path.name))], None
    if _GLOB_CHARACTERS & set(argument):
        matches = sorted(Path(match) for match in glob.glob(argument, recursive=recursive))
        files = [match for match in matches if match.is_file()]
        if files:
            return [(match, Path(match.name)) for match in files], None
        return [], f"{argument}: no file matches this pattern"
    return [], f"{argument}: no such file or folder"


def plan_cutouts(inputs: Iterable[str], out_dir: Path, suffix: str, *, recursive: bool = False, force: bool = False) -> Plan:
    """Expand files, folders and globs into jobs writing `<name><suffix>` below out_dir.

    Every argument is expanded first, so that no output, even with --force, may land on
    any input file (another argument's photo named like this one's cutout).
    """
    plan = Plan([], [], [])
    expanded = [_expand(argument, recursive, out_dir) for argument in inputs]
    sources = {source.resolve() for pairs, _ in expanded for source, _ in pairs}
    claimed: dict[Path, Path] = {}
    for pairs, problem in expanded:
        if problem:
            plan.problems.append(problem)
        for source, relative in pairs:
            output = out_dir / relative.with_suffix(suffix)
            key = output.resolve()
            if key == source.resolve():
                plan.problems.append(f"{source}: the output would overwrite the input; choose another --out")
            elif key in sources:
                plan.problems.append(f"{source}: its output {output} is an input file; choose another --out")
            elif key in claimed:
                if claimed[key] != source.resolve():
                    plan.problems.append(f"{source}: its output {output} is already written from {claimed[key]}")
            else:
                claimed[key] = source.resolve()
                (plan.jobs if force or not output.exists() else plan.skipped).append(Job(source, output))
    return plan
