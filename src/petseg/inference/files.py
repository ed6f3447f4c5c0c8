"""Which files a cutout reads and writes: input expansion, output names, atomic writes.

Outputs are named from their inputs (photo.jpg -> OUT/photo.png, a folder's subfolders
kept below OUT), so nothing is ever written outside OUT, and every file appears under
its final name only once it is complete.

Folders are scanned for every file name Pillow can decode (named files are tried
whatever their name); FIFOs, sockets, devices and symlink loops are reported and never
opened: reading a FIFO would block the whole batch.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from petseg.atomic import remove_stale_temporaries
from petseg.data.decode import not_a_regular_file, readable_suffixes
from petseg.errors import PetsegError, clipped

STDIN = "-"
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


def check_output_folder(out_dir: Path) -> None:
    """Refuse an output folder that is a file, or lies below one, before any work starts."""
    for folder in (out_dir, *out_dir.parents):
        if os.path.lexists(folder):
            if not folder.is_dir():
                raise PetsegError(f"{folder}: exists and is not a folder; the outputs need a folder")
            return


def _folder_images(folder: Path, recursive: bool, out_dir: Path) -> Iterable[Path]:
    """Candidate photos in a folder by name: hidden files (our temporaries) are never candidates."""
    suffixes = readable_suffixes()
    for root, directories, files in os.walk(folder):
        # Never read our own outputs back in when OUT lies inside an input folder.
        directories[:] = [] if not recursive else sorted(
            name for name in directories if (Path(root) / name).resolve() != out_dir.resolve()
        )
        for name in sorted(files):  # os.walk lists links to folders, loops and FIFOs among the files
            if Path(name).suffix.lower() in suffixes and not name.startswith("."):
                yield Path(root) / name


def _glob(pattern: str, recursive: bool) -> list[str]:
    """glob.glob, but `**` walks folders as a folder input does: never into a symbolic link to a
    folder. glob.glob follows them, and three links to "." in a folder make its walk endless."""
    parts = pattern.replace(os.altsep, os.sep).split(os.sep) if os.altsep else pattern.split(os.sep)
    if not recursive or "**" not in parts:
        return glob.glob(pattern)
    at = parts.index("**")
    rest = parts[at + 1:]
    while rest[:1] == ["**"]:  # a/**/**/b is a/**/b
        rest = rest[1:]
    rest = os.sep.join(rest) if rest else "*"  # a trailing ** matches everything below; folders are dropped later
    matches = []
    for top in glob.glob(os.sep.join(parts[:at]) or os.sep) if at else [""]:  # "" before ** in /**: the root
        for folder in _folders_below(top):
            matches += _glob(os.path.join(glob.escape(folder), rest) if folder else rest, recursive)
    return list(dict.fromkeys(matches))


def _folders_below(top: str) -> Iterator[str]:
    """`top` ("" for the current folder) and the folders below it that `**` matches: hidden ones and
    symbolic links to folders are left out, as glob.glob leaves out hidden ones."""
    for root, directories, _ in os.walk(top or os.curdir):  # os.walk does not follow links to folders
        directories[:] = sorted(name for name in directories if not name.startswith("."))
        yield root if top else root[len(os.curdir + os.sep):]  # ./a/b -> a/b, as glob.glob names them


def _split_unreadable(paths: Iterable[Path]) -> tuple[list[Path], list[str]]:
    """Regular files, and one problem line for each path that must not be opened."""
    files, problems = [], []
    for path in paths:
        problem = not_a_regular_file(path)
        if problem:
            problems.append(f"{path}: {problem}; skipped")
        else:
            files.append(path)
    return files, problems


def _expand(argument: str, recursive: bool, out_dir: Path) -> tuple[list[tuple[Path, Path]], list[str]]:
    """One INPUT argument -> (source, output path relative to OUT) pairs, and problems."""
    path = Path(argument)
    if path.is_dir():
        files, problems = _split_unreadable(_folder_images(path, recursive, out_dir))
        if not files and not problems:  # an empty folder, or one named like a photo: the user meant something else
            below = "" if recursive else " (subfolders are searched only when recursive)"
            problems = [f"{path}: no photos in this folder{below}"]
        return [(source, source.relative_to(path)) for source in files], problems
    if os.path.lexists(path):
        files, problems = _split_unreadable([path])
        return [(source, Path(source.name)) for source in files], problems
    if _GLOB_CHARACTERS & set(argument):
        matches = sorted(Path(match) for match in _glob(argument, recursive))
        files, problems = _split_unreadable(match for match in matches if not match.is_dir())
        if files or problems:
            return [(match, Path(match.name)) for match in files], problems
        return [], [f"{argument}: no file matches this pattern"]
    return [], [f"{argument}: no such file or folder"]


def _expand_or_report(argument: str, recursive: bool, out_dir: Path) -> tuple[list[tuple[Path, Path]], list[str]]:
    """_expand, with a path the system cannot even look at (a name over 255 bytes) as that argument's problem."""
    try:
        return _expand(argument, recursive, out_dir)
    except OSError as error:
        return [], [f"{clipped(argument)}: {error.strerror or error}"]


def plan_cutouts(inputs: Iterable[str], out_dir: Path, suffix: str, *, recursive: bool = False, force: bool = False) -> Plan:
    """Expand files, folders and globs into jobs writing `<name><suffix>` below out_dir.

    Every argument is expanded first, so that no output, even with --force, may land on
    any input file (another argument's photo named like this one's cutout).
    """
    plan = Plan([], [], [])
    expanded = [_expand_or_report(argument, recursive, out_dir) for argument in inputs]
    sources = {source.resolve() for pairs, _ in expanded for source, _ in pairs}
    claimed: dict[Path, Path] = {}
    for pairs, problems in expanded:
        plan.problems += problems
        for source, relative in pairs:
            output = out_dir / relative.with_suffix(suffix)
            key = output.resolve()
            if key == source.resolve():
                plan.problems.append(f"{source}: the output would overwrite the input; choose another output folder")
            elif key in sources:
                plan.problems.append(f"{source}: its output {output} is an input file; choose another output folder")
            elif key in claimed:
                if claimed[key] != source.resolve():
                    plan.problems.append(f"{source}: its output {output} is also {claimed[key]}'s; rename one of them")
            else:
                claimed[key] = source.resolve()
                # lexists: a dangling symbolic link there is something not to overwrite without --force too.
                (plan.jobs if force or not os.path.lexists(output) else plan.skipped).append(Job(source, output))
    return plan


def remove_stale_outputs(plan: Plan, out_dir: Path) -> None:
    """Delete temporaries that killed runs left where this plan writes (OUT and its subfolders used)."""
    for folder in sorted({out_dir, *(job.output.parent for job in plan.jobs + plan.skipped)}):
        remove_stale_temporaries(folder)
