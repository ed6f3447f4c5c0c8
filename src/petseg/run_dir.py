"""The run folder that `petseg train` writes: its file names, creating and guarding it,
what may change when a run is resumed, and which model file a run folder stands for.

This module is the only place that spells the run folder's file names. It sits below
both train/ and inference/ (it imports only the standard library, petseg.errors and petseg.atomic), so
inference can turn a run folder into its model file without importing the trainer.

    runs/x/config.json        the resolved TrainConfig (rewritten on every start)
    runs/x/last.pt            the resumable checkpoint (weights_only-loadable)
    runs/x/best.safetensors   the best validation epoch's model file
    runs/x/history.csv|json   one row per epoch
    runs/x/curves.png         loss and metric curves
    runs/x/summary.json       what `petseg compare` reads
    runs/x/tensorboard/       TensorBoard event files (when tensorboard is installed)
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Any, Iterator, Mapping

from petseg.atomic import remove_stale_temporaries
from petseg.errors import PetsegError, quoted

CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "last.pt"
BEST_MODEL_FILE = "best.safetensors"
HISTORY_CSV_FILE = "history.csv"
HISTORY_JSON_FILE = "history.json"
CURVES_FILE = "curves.png"
SUMMARY_FILE = "summary.json"
TENSORBOARD_FOLDER = "tensorboard"

RUN_FILES = (CONFIG_FILE, CHECKPOINT_FILE, BEST_MODEL_FILE, HISTORY_CSV_FILE, HISTORY_JSON_FILE, CURVES_FILE,
             SUMMARY_FILE)

BROKEN_CHECKPOINT_ADVICE = "put a good copy back, or start the run again with {force}"

# What may differ between a run and its resumption: how it is executed and how long it
# may go on. Everything else (model, optimisation, data and its order, augmentation)
# would make the resumed run a different run, so it must equal the checkpoint's.
RESUMABLE_SETTINGS = ("epochs", "patience", "workers", "threads", "device", "amp", "progress", "cache_dir")
# Compared as places on disk, not as spellings.
PATH_SETTINGS = ("data", "weights")
# The run folder itself may have been moved or renamed.
IGNORED_ON_RESUME = ("out",)


class ResumeConflict(PetsegError):
    """A setting differs from the run being resumed: `setting` (a TrainConfig field) was
    `saved` in the run and is `given` now."""

    def __init__(self, run_dir: str | Path, setting: str, saved: Any, given: Any):
        super().__init__(f"{run_dir}: the run was trained with {setting}={quoted(saved)}, not {quoted(given)}; only "
                         f"{', '.join(RESUMABLE_SETTINGS)} may change on resume")
        self.setting, self.saved, self.given = setting, saved, given


def prepare(run_dir: str | Path, *, resume: bool, force: bool, create: bool = True) -> Path:
    """Check that `run_dir` suits a new run (or a resumed one) and create it.

    A new run refuses a folder that already holds a run unless `force`, which deletes
    the old run's files (a stale checkpoint must never be resumed into the new run).
    `create=False` only checks (the other processes of a distributed run).
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise PetsegError(f"{run_dir}: is a file, not a run folder")
    if create and run_dir.is_dir():
        remove_stale_temporaries(run_dir)  # what a killed write left
    if resume:
        if not (run_dir / CHECKPOINT_FILE).is_file():
            raise PetsegError(f"{run_dir}: nothing to resume (no {CHECKPOINT_FILE})", advice="drop {resume} to start a run")
        return run_dir
    existing = [name for name in RUN_FILES if (run_dir / name).exists()]
    if existing and not force:
        raise PetsegError(f"{run_dir}: already holds a run ({existing[0]})",
                          advice="use {resume} to continue it or {force} to start over")
    if create:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:  # a file in the way, /proc, a read-only place
            raise PetsegError(f"{run_dir}: cannot create the run folder ({error.strerror or error})") from None
        for name in existing:
            (run_dir / name).unlink()
        if force:  # the old run's curves must not mix with the new one's
            shutil.rmtree(run_dir / TENSORBOARD_FOLDER, ignore_errors=True)
    return run_dir


@contextlib.contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Turn a failed write of a run file (disk full, no permission) into one line naming it.

    Every run file is written atomically, so the files already there are intact: the run
    can be resumed from its last checkpoint once the cause is fixed.
    """
    try:
        yield
    except OSError as error:
        raise PetsegError(f"{path}: cannot write it ({error.strerror or error}); the run's earlier files are intact",
                          advice="fix this, then continue the run with {resume}") from None


def unusable_checkpoint(path: str | Path, error: BaseException) -> PetsegError:
    """The error for a checkpoint that loads but is not one of this run's (crafted, foreign)."""
    if isinstance(error, KeyError):
        reason = f"it has no {error}"
    elif isinstance(error, RuntimeError):  # load_state_dict: other layers or shapes
        reason = "its weights do not fit this run's model"
    else:
        reason = str(error).splitlines()[0][:200]
    return PetsegError(f"{path}: not a checkpoint this run can resume ({reason})", advice=BROKEN_CHECKPOINT_ADVICE)


def _same(name: str, old: Any, new: Any) -> bool:
    if name in PATH_SETTINGS and old is not None and new is not None:
        return Path(old).expanduser().resolve() == Path(new).expanduser().resolve()
    if isinstance(old, (list, tuple)) and isinstance(new, (list, tuple)):
        return list(old) == list(new)
    return old == new


def check_resume(run_dir: str | Path, saved: Mapping[str, Any], current: Mapping[str, Any]) -> None:
    """The one resume policy: only RESUMABLE_SETTINGS may differ from the saved settings.

    `saved` and `current` map setting names to values (e.g. `asdict(TrainConfig)`), the
    saved ones already completed with defaults for settings newer than the run.
    Raises ResumeConflict naming the first setting that differs.
    """
    for name, new in current.items():
        if name in RESUMABLE_SETTINGS or name in IGNORED_ON_RESUME:
            continue
        old = saved.get(name)
        if not _same(name, old, new):
            raise ResumeConflict(run_dir, name, old, new)


def check_resumable_folder(run_dir: str | Path, best_epoch: Any) -> None:
    """What a resumed run needs beside its checkpoint: the best epoch's model, which it cannot
    make again (a later epoch may never beat it), and a TensorBoard folder to write to."""
    best = Path(run_dir) / BEST_MODEL_FILE
    if isinstance(best_epoch, int) and best_epoch >= 1 and not os.path.lexists(best):
        raise PetsegError(f"{best}: missing, though the checkpoint's best epoch is {best_epoch}: the resumed run "
                          "would end without its best model", advice=BROKEN_CHECKPOINT_ADVICE)
    curves = Path(run_dir) / TENSORBOARD_FOLDER
    if os.path.lexists(curves) and not curves.is_dir():
        raise PetsegError(f"{curves}: is not a folder; the run writes its TensorBoard curves there, move it away")


def check_world_size(run_dir: str | Path, saved: int | None, current: int) -> None:
    """A partial epoch's data order is per process: resume with as many processes."""
    if saved is not None and saved != current:
        raise PetsegError(f"{run_dir}: the checkpoint was trained by {saved} process(es), not {current}; "
                          "resume with the same number of processes")


def best_model_file(run_dir: str | Path) -> Path:
    """The model file a run folder stands for: its best validation epoch's."""
    path = Path(run_dir) / BEST_MODEL_FILE
    if not os.path.lexists(path):
        raise PetsegError(f"{run_dir}: run folder has no {BEST_MODEL_FILE} (no finished epoch yet?)")
    from petseg.data.decode import not_a_regular_file

    problem = not_a_regular_file(path)  # a link to /dev/zero, a folder: not "no finished epoch"
    if problem:
        raise PetsegError(f"{path}: cannot read the model file ({problem})")
    return path
