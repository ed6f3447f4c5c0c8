"""Which files a cutout reads and writes: input expansion, output names, atomic writes.

Outputs are named from their inputs (photo.jpg -> OUT/photo.png, a folder's subfolders
kept below OUT), so nothing is ever written outside OUT, and every file appears under
its final name only once it is complete.
"""

from __future__ import annotations

import glob
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterable

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
    """Expand files, folders and globs into jobs writing `<name><suffix>` below out_dir."""
    plan = Plan([], [], [])
    claimed: dict[Path, Path] = {}
    for argument in inputs:
        pairs, problem = _expand(argument, recursive, out_dir)
        if problem:
            plan.problems.append(problem)
        for source, relative in pairs:
            output = out_dir / relative.with_suffix(suffix)
            key = output.resolve()
            if key == source.resolve():
                plan.problems.append(f"{source}: the output would overwrite the input; choose another --out")
            elif key in claimed:
                if claimed[key] != source.resolve():
                    plan.problems.append(f"{source}: its output {output} is already written from {claimed[key]}")
            else:
                claimed[key] = source.resolve()
                (plan.jobs if force or not output.exists() else plan.skipped).append(Job(source, output))
    return plan


def write_atomic(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call write(file) on a temporary file beside `path`, then rename it into place.

    A crash or a failed write leaves no partial file under the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    # os.open honours the umask, unlike mkstemp's private 0600 files.
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as file:
            write(file)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: Path, data: bytes) -> None:
    write_atomic(path, lambda file: file.write(data))
