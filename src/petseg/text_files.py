"""The small text files users hand petseg: list files, class mappings, training configs.

Each is user input: a FIFO would block a read, a megabyte-long line or a file of
another encoding would end in a traceback, and JSON nested a hundred thousand deep
exhausts Python's recursion. Here each of those is one line naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from petseg.errors import PetsegError

# Far above any list, class mapping or config petseg writes or reads.
MAX_TEXT_BYTES = 16 * 2**20


def read_text_file(path: str | Path, what: str, *, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """The UTF-8 text of a regular file of at most `max_bytes`; `what` names it in errors."""
    from petseg.data.decode import not_a_regular_file

    path = Path(path)
    problem = not_a_regular_file(path)
    if problem == "no such file":
        raise PetsegError(f"{path}: no such {what}")
    if problem:
        raise PetsegError(f"{path}: cannot read the {what} ({problem})")
    try:
        with open(path, "rb") as file:
            data = file.read(max_bytes + 1)
    except OSError as error:
        raise PetsegError(f"{path}: cannot read the {what} ({error.strerror or error})") from None
    if len(data) > max_bytes:
        raise PetsegError(f"{path}: the {what} is over {max_bytes // 2**20} MB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise PetsegError(f"{path}: the {what} is not UTF-8 text (byte {error.start})") from None


def parse_json(text: str, path: str | Path) -> Any:
    try:
        return json.loads(text)
    except RecursionError:
        raise PetsegError(f"{path}: not valid JSON (nested too deeply)") from None
    except ValueError as error:
        if "int_max_str_digits" in str(error):  # Python's advice to raise its limit is not the user's to take
            raise PetsegError(f"{path}: not valid JSON (a number of over 4300 digits)") from None
        raise PetsegError(f"{path}: not valid JSON ({error})") from None
