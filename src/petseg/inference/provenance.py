"""Which options and inputs made the cutouts in an output folder, so a re-run can tell "done" from "different".

`petseg cutout` records, per output file, the settings that shape its pixels (model,
mode, alpha, background, flip TTA), the model file and the photo it was cut from, in a
small JSON file in OUT. A re-run skips outputs made the same way, and refuses (naming
--force) when they were made with other settings, from another photo or by another
model file: a photo of the same name in another folder, or a model retrained in place.

Files are told apart by resolved path, size and modification time (ns), as make does,
not by their content: hashing every photo on every re-run would cost what skipping saves.
Entries of older records lack the files, so they count as made differently: the user is
told and pointed to --force, never handed a stale cutout as done.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Iterable, Protocol

from petseg.atomic import write_text_atomic
from petseg.errors import PetsegError
from petseg.text_files import parse_json, read_text_file

RECORD_FILE = ".petseg-cutouts.json"
# The entry key that names the photo, beside the settings (the model file is one of those).
SOURCE_KEY = "source"
# An output's entry is about 340 bytes and 28 JSON values (keys, texts, numbers and its three
# objects). A record larger than this many outputs need is unreadable, refused before it is
# parsed: 64 MB of "{}," would be 22 million dicts, 1.7 GB. The largest a record may be takes
# about 350 MB to read, as does the worst one within the limits.
MAX_RECORD_OUTPUTS = 190_000
MAX_RECORD_BYTES = 64 * 2**20
VALUES_PER_OUTPUT, OBJECTS_PER_OUTPUT = 32, 3


class CutoutJob(Protocol):
    source: Path  # the photo
    output: Path  # its cutout, under OUT


def file_identity(path: str | Path) -> dict:
    """{"path", "size", "mtime_ns"} of a file (symlinks followed); only the path when it cannot be read."""
    resolved = Path(path).resolve()
    try:
        status = os.stat(resolved)
    except OSError:
        return {"path": str(resolved)}
    return {"path": str(resolved), "size": status.st_size, "mtime_ns": status.st_mtime_ns}


def model_identity(model: str | Path | None) -> dict:
    """The model file a cutout runs on: the bundled model by name and petseg version, any other as a file.

    A run folder stands for its best model file, so retraining the run changes its identity.
    """
    from petseg import __version__
    from petseg.models.files import BUNDLED_MODEL_NAME, resolve_model_path

    if model is None:
        return {"bundled": Path(BUNDLED_MODEL_NAME).stem, "version": __version__}
    return file_identity(resolve_model_path(model))


def read_record(out_dir: Path, broken: str = "") -> dict[str, dict]:
    """{output path relative to out_dir: entry}; empty when absent.

    A record that cannot be read (a FIFO, too large, not JSON, nested too deeply) is also
    empty, after one warning: "<record>: <problem>; <broken>".
    """
    path = out_dir / RECORD_FILE
    if not os.path.lexists(path):
        return {}
    try:
        record = _parse_record(read_text_file(path, "cutout record", max_bytes=MAX_RECORD_BYTES), path)
    except PetsegError as error:
        warnings.warn(f"{error}; {broken or 'ignoring it'}", stacklevel=2)
        return {}
    return record


def _parse_record(text: str, path: Path) -> dict[str, dict]:
    # Every JSON value but the first follows one of "{[:," and every object opens with "{":
    # counted, in texts too, they bound what parsing would build from above.
    values, objects = sum(map(text.count, "{[:,")), text.count("{")
    if values > VALUES_PER_OUTPUT * MAX_RECORD_OUTPUTS or objects > OBJECTS_PER_OUTPUT * MAX_RECORD_OUTPUTS:
        raise PetsegError(f"{path}: the cutout record is too large "
                          f"(more JSON values than the settings of {MAX_RECORD_OUTPUTS:,} outputs)")
    record = parse_json(text, path)
    if not isinstance(record, dict) or not all(isinstance(entry, dict) for entry in record.values()):
        raise PetsegError(f"{path}: the cutout record is not a mapping of outputs to settings")
    return record


def _key(out_dir: Path, output: Path) -> str:
    return output.relative_to(out_dir).as_posix()


def _entry(job: CutoutJob, settings: dict) -> dict:
    return {**settings, SOURCE_KEY: file_identity(job.source)}


def made_differently(out_dir: Path, jobs: Iterable[CutoutJob], settings: dict) -> list[Path]:
    """The existing outputs of `jobs` not recorded as cut from their source with `settings`.

    Unrecorded outputs, and all of them when the record is unreadable, count as different.
    """
    jobs = list(jobs)
    if not jobs:
        return []
    record = read_record(out_dir, "the outputs already in the folder count as made with unknown options")
    return [job.output for job in jobs if record.get(_key(out_dir, job.output)) != _entry(job, settings)]


def record_outputs(out_dir: Path, jobs: Iterable[CutoutJob], settings: dict) -> None:
    """Note that the outputs of `jobs` (under out_dir) were just cut from their sources with `settings`."""
    jobs = list(jobs)
    if not jobs:
        return
    record = read_record(out_dir, "writing a new one")
    record.update({_key(out_dir, job.output): _entry(job, settings) for job in jobs})
    write_text_atomic(out_dir / RECORD_FILE, json.dumps(record, indent=1, sort_keys=True))
