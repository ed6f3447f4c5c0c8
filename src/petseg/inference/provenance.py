"""Which options made the cutouts in an output folder, so a re-run can tell "done" from "different".

`petseg cutout` records, per output file, the settings that shape its pixels (model,
mode, alpha, background, flip TTA) in a small JSON file in OUT. A re-run skips outputs
made with the same settings, and refuses (naming --force) when they were made with others.
"""

from __future__ import annotations

import json
from pathlib import Path

from petseg.atomic import write_text_atomic

RECORD_FILE = ".petseg-cutouts.json"


def read_record(out_dir: Path) -> dict[str, dict]:
    """{output path relative to out_dir: settings}; empty when absent or unreadable."""
    try:
        record = json.loads((out_dir / RECORD_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _key(out_dir: Path, output: Path) -> str:
    return output.relative_to(out_dir).as_posix()


def made_differently(out_dir: Path, outputs: list[Path], settings: dict) -> list[Path]:
    """The existing outputs not recorded as made with `settings` (unrecorded ones count as different)."""
    record = read_record(out_dir)
    return [output for output in outputs if record.get(_key(out_dir, output)) != settings]


def record_outputs(out_dir: Path, outputs: list[Path], settings: dict) -> None:
    """Note that `outputs` (under out_dir) were just written with `settings`."""
    if not outputs:
        return
    record = read_record(out_dir)
    record.update({_key(out_dir, output): settings for output in outputs})
    write_text_atomic(out_dir / RECORD_FILE, json.dumps(record, indent=1, sort_keys=True))
