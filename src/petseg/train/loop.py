"""fit(): train a model into its run folder, read top to bottom.

    open_run_folder()  guard the folder; on --resume read the checkpoint and check the settings
    setup()            the model, data, optimizer and schedule the config asks for
    restore()          continue exactly where the checkpoint left off
    run_epochs()       train, validate and save after every epoch
    finish()           the summary file and the RunResult

After every epoch rank 0 writes the best model (when val mIoU improved), the
checkpoint, the history, the curves and the TensorBoard scalars, each atomically;
petseg.run_dir names them.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict
from typing import Callable

from petseg import run_dir as run_folder
from petseg.errors import PetsegError
from petseg.train import reporting
from petseg.train.checkpoint import load_checkpoint
from petseg.train.distributed import DistributedContext, barrier, cleanup_distributed, setup_distributed
from petseg.train.engine import StopRequest, any_rank, train_one_epoch, validate
from petseg.train.epoch_stats import EpochStats
from petseg.train.recipes import TrainConfig
from petseg.train.scalars import ScalarLog
from petseg.train.setup import Training, build_model, setup
from petseg.train.state import RunResult

__all__ = ["RunResult", "build_model", "fit"]


def fit(config: TrainConfig, *, resume: bool = False, force: bool = False,
        on_step: Callable[[int], None] | None = None, log: Callable[[str], None] | None = None) -> RunResult:
    """Train a model as `config` says, into config.out; see the module docstring for the files.

    Runs alone or under torchrun (DDP). `on_step(step_in_epoch)` is called after every
    optimizer step (progress reporting, tests). Returns the run's RunResult; a Ctrl-C
    returns one with interrupted=True after saving the checkpoint.
    """
    from petseg.train.runtime import resolve_device

    context = setup_distributed(resolve_device(config.device).type)
    try:
        checkpoint = open_run_folder(config, context, resume=resume, force=force)
        training = setup(config, context, log or _print)
        if context.is_main:  # only now: a model or data that fails to load leaves no empty run folder
            run_folder.prepare(config.out, resume=resume, force=force)
        if checkpoint is not None:
            restore(training, checkpoint)
        start(training, resumed=checkpoint is not None)
        stopped_reason, interrupted = run_epochs(training, on_step)
        return finish(training, stopped_reason, interrupted)
    finally:
        cleanup_distributed(context)


def _print(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(message, file=sys.stdout)  # above a progress bar, if one is drawn
    sys.stdout.flush()


def open_run_folder(config: TrainConfig, context: DistributedContext, *, resume: bool, force: bool) -> dict | None:
    """Check the run folder (fit creates it once the run is set up); on resume, read its
    checkpoint, checked against the config."""
    path = run_folder.prepare(config.out, resume=resume, force=force, create=False)
    checkpoint = None
    if resume:
        checkpoint_path = path / run_folder.CHECKPOINT_FILE
        checkpoint = load_checkpoint(checkpoint_path)
        try:  # settings newer than the checkpoint held their defaults there
            saved = TrainConfig.from_dict(checkpoint["config"])
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise run_folder.unusable_checkpoint(checkpoint_path, error) from None
        run_folder.check_resume(path, asdict(saved), asdict(config))
        run_folder.check_world_size(path, checkpoint.get("world_size"), context.world_size)
        run_folder.check_resumable_folder(path, checkpoint.get("best_epoch"))
    barrier(context)  # every rank has checked and read the run folder before rank 0 writes to it
    return checkpoint


def restore(training: Training, checkpoint: dict) -> None:
    checkpoint_path = training.run_dir / run_folder.CHECKPOINT_FILE
    try:
        training.load_state_dict(checkpoint)
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError, IndexError) as error:
        raise run_folder.unusable_checkpoint(checkpoint_path, error) from None
    partial = training.state.partial_epoch
    training.log(f"resuming {training.run_dir} at epoch {training.state.epoch + 1}"
                 + (f", step {partial['stats']['steps'] + 1}" if partial else ""))


def start(training: Training, *, resumed: bool) -> None:
    if not training.context.is_main:
        return
    # Rewritten on every start, resumes included: a later plain --resume continues
    # with the settings of the latest one (e.g. its --epochs).
    from petseg.atomic import write_text_atomic

    path = training.run_dir / run_folder.CONFIG_FILE
    with run_folder.writing(path):
        write_text_atomic(path, training.config.to_json() + "\n")
    if not resumed:
        training.log(training.description)


def run_epochs(training: Training, on_step: Callable[[int], None] | None) -> tuple[str, bool]:
    """Train up to config.epochs: (why it stopped, whether it was interrupted)."""
    config, context, state = training.config, training.context, training.state
    if state.early_stopping.should_stop:
        return state.early_stopping.reason(), False
    with StopRequest() as stop, ScalarLog(training.run_dir, first_epoch=state.epoch + 1,
                                          enabled=context.is_main) as scalars:
        for epoch in range(state.epoch, config.epochs):
            stats, seconds = train_epoch(training, epoch, stop, on_step)
            if state.partial_epoch is not None:
                if context.is_main:
                    training.save_checkpoint()
                return f"interrupted at epoch {epoch + 1}, step {stats.steps}", True
            if end_epoch(training, epoch, stats, seconds, scalars):
                return f"early stop: {state.early_stopping.reason()}", False
            if any_rank(context, stop.requested):
                return f"interrupted after epoch {epoch + 1}", True
    return f"reached {config.epochs} epochs", False


def train_epoch(training: Training, epoch: int, stop: StopRequest, on_step) -> tuple[EpochStats, float]:
    """One epoch's training steps, or the rest of an interrupted one; (stats, seconds).

    Stopped by Ctrl-C, it leaves the epoch so far in state.partial_epoch.
    """
    from petseg.train import data as run_data
    from petseg.train.runtime import seed_everything

    config, state = training.config, training.state
    if state.partial_epoch is None:
        # Each epoch's randomness (augmentation, dropout) depends on (seed, epoch)
        # only, so a run resumed at an epoch boundary replays the uninterrupted one.
        seed_everything(config.seed * 1_000_003 + epoch)
        stats, seconds_before = EpochStats(), 0.0
    else:  # the RNG states were restored with the checkpoint
        stats = EpochStats.from_state_dict(state.partial_epoch["stats"])
        seconds_before, state.partial_epoch = state.partial_epoch["seconds"], None
    order = run_data.train_order(training.train_set, training.context, config.seed, epoch)
    loader = run_data.epoch_loader(training.train_set, order[stats.steps * training.batch_size:],
                                   training.batch_size, config.workers, config.seed * 1_000_003 + epoch)
    started = time.perf_counter()
    with reporting.progress_bar(training, epoch, stats.steps) as bar:
        finished = train_one_epoch(training.engine, loader, training.optimizer, training.scheduler, training.scaler,
                                   stats, stop=stop, progress=bar, on_step=on_step)
    elapsed = time.perf_counter() - started
    state.train_seconds += elapsed
    if not finished:
        state.partial_epoch = {"stats": stats.state_dict(), "seconds": seconds_before + elapsed}
    return stats, seconds_before + elapsed


def end_epoch(training: Training, epoch: int, stats: EpochStats, seconds: float, scalars: ScalarLog) -> bool:
    """Validate, record and save a finished epoch; True when training should stop early."""
    context, state = training.context, training.state
    started = time.perf_counter()
    train = stats.reduce(context)
    val = validate(training.engine, training.val_loader)
    validation_seconds = time.perf_counter() - started
    state.train_seconds += validation_seconds
    lr = max(group["lr"] for group in training.optimizer.param_groups)
    row = reporting.epoch_row(epoch + 1, lr, seconds + validation_seconds, train, val)
    check_not_diverged(training, row)
    improved, stop_early = state.record(row)
    problem = None
    if context.is_main:
        try:
            if improved:
                reporting.save_best(training.delivered_model, training.run_dir)
            training.save_checkpoint()
            reporting.write_reports(training.run_dir, state.history)
        except PetsegError as error:  # a full disk: every rank stops now rather than wait for rank 0
            problem = error
        else:
            scalars.add_epoch(row)
            training.log(reporting.summary_line(row, training.config.epochs, improved))
    if any_rank(context, problem is not None):  # also the end-of-epoch barrier
        raise problem or PetsegError(f"{training.run_dir}: rank 0 could not save epoch {epoch + 1} and stopped the "
                                     "run (its error says why)")
    return stop_early


def check_not_diverged(training: Training, row: dict[str, float]) -> None:
    """Stop the run when the epoch's training or validation loss is not finite.

    Its weights are then NaN or infinite: the epoch is neither recorded nor saved, so the best
    model, the checkpoint and the history stay those of the last good epoch (a NaN model scored
    some mIoU and became the "best" one). Every rank reduced the same losses, so all stop here.
    """
    diverged = [name for name in ("train_loss", "val_loss") if not math.isfinite(row[name])]
    if not diverged:
        return
    if training.context.is_main:  # the epoch's figures, for the record, never marked best
        training.log(reporting.summary_line(row, training.config.epochs, improved=False))
    loss = diverged[0]
    # lr cannot change on --resume (it would be another run), and a resume replays the same epoch.
    raise PetsegError(f"training diverged at epoch {row['epoch']} ({loss.replace('_', ' ')} {row[loss]})",
                      advice="lower {lr} and start again with {force}")


def finish(training: Training, stopped_reason: str, interrupted: bool) -> RunResult:
    state, run_dir = training.state, training.run_dir
    result = RunResult(run_dir, len(state.history), state.best_epoch, state.best_metrics(), state.train_seconds,
                       stopped_reason, interrupted, state.history)
    if training.context.is_main:
        if not interrupted:
            reporting.write_summary(result, training.config, training.model, training.context)
        training.log(f"{stopped_reason}; best val mIoU {state.best_miou:.4f} at epoch {state.best_epoch}; "
                     f"{state.train_seconds:.0f}s of training; files in {run_dir}"
                     + (f"\nresume with: petseg train --out {run_dir} --resume" if interrupted else ""))
    if not interrupted:
        # Rank 0 is still writing the summary: a rank that leaves the process group before
        # it does can abort it in gloo ("terminate called without an active exception").
        barrier(training.context)
    return result

