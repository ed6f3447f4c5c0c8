"""Per-epoch history: one row of numbers per epoch, written as CSV and JSON."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from petseg.errors import PetsegError
from petseg.atomic import write_text_atomic
from petseg.run_dir import HISTORY_CSV_FILE, HISTORY_JSON_FILE
from petseg.text_files import parse_json, read_text_file

# Columns that lead the CSV; any further keys follow in sorted order.
LEADING_COLUMNS = ("epoch", "lr", "seconds", "train_loss", "val_loss")


def history_columns(rows: list[dict[str, float]]) -> list[str]:
    keys = {key for row in rows for key in row}
    leading = [key for key in LEADING_COLUMNS if key in keys]
    return leading + sorted(keys - set(leading))


def write_history(run_dir: str | Path, rows: list[dict[str, float]]) -> None:
    """The run folder's history files (CSV and JSON), each replaced atomically."""
    run_dir = Path(run_dir)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=history_columns(rows), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(run_dir / HISTORY_CSV_FILE, buffer.getvalue())
    write_text_atomic(run_dir / HISTORY_JSON_FILE, json.dumps(rows, indent=1))


def read_history(run_dir: str | Path) -> list[dict[str, float]]:
    path = Path(run_dir) / HISTORY_JSON_FILE
    if not path.exists():
        raise PetsegError(f"{path}: missing; is {run_dir} a petseg run directory?")
    rows = parse_json(read_text_file(path, "history"), path)
    if not isinstance(rows, list):
        raise PetsegError(f"{path}: expected a list of per-epoch rows")
    for number, row in enumerate(rows, 1):
        if not isinstance(row, dict) or not all(
            isinstance(value, (int, float)) and not isinstance(value, bool) for value in row.values()
        ):
            raise PetsegError(f"{path}: row {number} is not a mapping of names to numbers")
    return rows
