"""Write files so that no reader, crash or kill ever sees a half-written one.

Everything petseg writes (model files, checkpoints, cutouts, reports) goes through
here: the data lands in a temporary file beside the target, reaches the disk, and
is renamed over the target in one step.

A process killed mid-write (kill -9, power loss) leaves its temporary behind. They are
named `.NAME.petseg-tmp-PID-RANDOM`, so a user can tell what they are, and the next run
of the same command calls `remove_stale_temporaries(folder)`, which deletes those whose
process is gone.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from petseg.errors import PetsegError

TEMPORARY_MARK = ".petseg-tmp-"
_TEMPORARY_NAME = re.compile(r"^\..+" + re.escape(TEMPORARY_MARK) + r"(?P<pid>\d+)-[0-9a-f]{8}$")


# The longest file name most file systems take, in bytes.
NAME_MAX = 255


def temporary_path(path: str | Path) -> Path:
    """A fresh temporary name beside `path`: hidden, recognisable, tagged with this process.

    A target name close to NAME_MAX is shortened in the temporary name (a 244-character
    name could not be written, though it fits): the rename gives the file its full name.
    """
    path = Path(path)
    tag = f"{TEMPORARY_MARK}{os.getpid()}-{secrets.token_hex(4)}"
    name = os.fsdecode(os.fsencode(path.name)[: NAME_MAX - 1 - len(tag)])
    return path.with_name(f".{name}{tag}")


def _process_is_running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    except OverflowError:
        return False
    return True


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporaries (files or folders) that dead petseg processes left in `folder`.

    Only `folder` itself is scanned, not its subfolders. Temporaries of a process that is
    still running on this machine are kept, so two runs may share a folder. Returns
    what was removed; a missing folder or one that cannot be listed removes nothing.
    """
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMPORARY_NAME.match(entry.name)
        if not match or _process_is_running(int(match["pid"])):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except OSError:
            continue  # gone already (another run cleaned it) or not ours to delete
        removed.append(Path(entry.path))
    return removed


def refuse_to_overwrite(path: str | Path, force: bool) -> None:
    """Unless `force`, refuse a `path` that is there: a file, or a dangling symbolic link (which
    exists() calls absent, and which writing would have silently replaced)."""
    if not force and os.path.lexists(path):
        raise PetsegError(f"{path}: already exists", advice="{force} overwrites it")


def prepare_output_folder(folder: str | Path) -> None:
    """Before a command's work: refuse a folder its outputs could not be written to, and clear it of
    the temporaries dead runs left.

    The folder is not created (a command that fails later leaves nothing behind); its nearest
    existing ancestor must be a folder that takes a file: not a file, not read-only, not /proc.
    Raises PetsegError naming the folder.
    """
    folder = Path(folder)
    existing = next(path for path in (folder, *folder.parents) if os.path.lexists(path))
    if not existing.is_dir():
        raise PetsegError(f"{existing}: exists and is not a folder; the outputs need a folder")
    probe = temporary_path(existing / "write-check")
    try:
        probe.touch(exist_ok=False)
        probe.unlink()
    except OSError as error:
        raise PetsegError(f"{folder}: cannot write there ({error.strerror or error})") from None
    remove_stale_temporaries(folder)


def make_temporary_folder(path: str | Path) -> Path:
    """Create and return an empty temporary folder beside `path` (e.g. to unpack into)."""
    folder = temporary_path(path)
    folder.mkdir(parents=False)
    return folder


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; if the block succeeds it is renamed to `path`.

    The temporary file is created here, so it gets the usual umask permissions, and
    they are put back after the block: some writers (safetensors) replace the file
    with a private 0600 one of their own.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_path(path)
    temporary.touch(exist_ok=False)
    permissions = temporary.stat().st_mode & 0o777
    try:
        yield temporary
        os.chmod(temporary, permissions)
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())  # the data must be on disk before the rename is
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_atomic(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """Call write(file) on a temporary binary file, then move it into place."""
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as file:
            write(file)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    write_atomic(path, lambda file: file.write(data))


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))
