"""Write files so that no reader, crash or kill ever sees a half-written one.

Everything petseg writes (model files, checkpoints, cutouts, reports) goes through
here: the data lands in a temporary file beside the target, reaches the disk, and
is renamed over the target in one step.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import BinaryIO, Callable, Iterator


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; if the block succeeds it is renamed to `path`.

    The temporary file is created here, so it gets the usual umask permissions, and
    they are put back after the block: some writers (safetensors) replace the file
    with a private 0600 one of their own.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
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
