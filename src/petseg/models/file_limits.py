"""What a weights file may hold, checked before anything is loaded from it, so that a small
crafted file cannot take loading to gigabytes. Model files, --weights files and training
checkpoints all pass these checks.

A .safetensors file lists its tensors in a JSON header: its size and its count of tensors
are bounded. torch.save writes a zip archive whose records (the pickled structure, one
record per tensor storage) are stored uncompressed, so what it wrote never holds more than
its own size; torch.load reads each record whole, inflating it first if it is compressed.
What the records inflate to is written in the archive's directory, readable without
inflating anything.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from petseg.errors import PetsegError

# The bundled model has 440 tensors in a 45 KB header. A file of a million empty tensors
# (a 64 MB header) took loading 1.45 GB and 28 s before it was found not to fit.
MAX_TENSORS = 20_000
MAX_HEADER_BYTES = 16 * 2**20
# torch.load tells its zip format from the legacy one (raw bytes, nothing to inflate) by these.
ZIP_MAGIC = b"PK\x03\x04"
# Stored records add up to less than the file itself. Twice the file (and a megabyte for a
# small file's pickle) still takes a .pth that another tool deflated, whose float weights
# shrink by a tenth or so, while torch.load's memory stays within about twice the file:
# a 3.4 MB checkpoint of deflated zeros had taken it to 3 GB.
MAX_INFLATION = 2
INFLATION_ALLOWANCE_BYTES = 2**20


def check_header_limits(path: Path, what: str = "model file", verdict: str = "not a petseg model") -> None:
    """Refuse a .safetensors header over MAX_HEADER_BYTES before it is parsed (its length is the
    file's first 8 bytes), then one of over MAX_TENSORS tensors before any is loaded.
    `what` and `verdict` word the error; safe_open's own errors (not safetensors at all)
    are left to the caller."""
    from safetensors import safe_open

    try:
        with open(path, "rb") as file:
            length = int.from_bytes(file.read(8), "little")
            file_bytes = os.fstat(file.fileno()).st_size
    except OSError as error:
        raise PetsegError(f"{what} {path}: cannot read it ({error.strerror or error})") from None
    if MAX_HEADER_BYTES < length <= file_bytes - 8:  # longer than the file: not safetensors at all, as safe_open says
        raise PetsegError(f"{what} {path} has a header of {length} bytes, over {MAX_HEADER_BYTES}: {verdict}")
    with safe_open(str(path), framework="numpy") as handle:
        count = len(handle.keys())
    if count > MAX_TENSORS:
        raise PetsegError(f"{what} {path} holds {count} tensors, over {MAX_TENSORS}: {verdict}")


def inflation_problem(path: str | Path) -> str | None:
    """Why torch.load must not read `path` (its records would inflate far beyond the file), or None.

    Raises zipfile.BadZipFile (or another error) when the file starts like a zip but its
    directory cannot be read: torch.load could not read it either, and callers say so.
    """
    with open(path, "rb") as file:
        if file.read(len(ZIP_MAGIC)) != ZIP_MAGIC:
            return None
        file_bytes = os.fstat(file.fileno()).st_size
        with zipfile.ZipFile(file) as archive:
            inflated_bytes = sum(record.file_size for record in archive.infolist())
    if inflated_bytes <= MAX_INFLATION * file_bytes + INFLATION_ALLOWANCE_BYTES:
        return None
    return (f"holds compressed records that would inflate to {_in_words(inflated_bytes)} from "
            f"{_in_words(file_bytes)} (torch.save writes none)")


def _in_words(size: int) -> str:
    return f"{size / 2**30:.1f} GB" if size >= 2**30 else f"{size / 2**20:.1f} MB"
