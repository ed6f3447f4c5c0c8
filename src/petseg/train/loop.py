"""The training loop: train_one_epoch(), validate() and fit(), read top to bottom.

fit() owns the run directory: config.json at the start; after every epoch
best.safetensors (when val mIoU improved), the `last.pt` checkpoint, history.csv/json
and curves.png, each written atomically by rank 0 only.
"""

from __future__ import annotations

import copy
import math
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from petseg.data.labels import IGNORE_INDEX
from petseg.errors import PetsegError
from petseg.atomic import write_text_atomic
from petseg import run_dir as run_folder
from petseg.train.checkpoint import load_checkpoint, restore_rng_states, save_checkpoint
from petseg.train import reporting
from petseg.train.distributed import DistributedContext, barrier, cleanup_distributed, setup_distributed
from petseg.train.early_stopping import EarlyStopping
from petseg.train.epoch_stats import EpochStats
from petseg.train.recipes import TrainConfig



@dataclass
class RunResult:
    run_dir: Path
    epochs_completed: int
    best_epoch: int  # 1-based; 0 when no epoch finished
    best_metrics: dict[str, float]  # validation metrics of the best epoch
    train_seconds: float
    stopped_reason: str
    interrupted: bool = False
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def best_model_path(self) -> Path:
        return self.run_dir / run_folder.BEST_MODEL_FILE


class StopRequest:
    """First Ctrl-C: finish the current step, save a checkpoint and stop. Second: stop now."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping after this step (Ctrl-C again to stop at once)", file=sys.stderr, flush=True)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


@dataclass
class Engine:
    """What one training step needs besides the batch."""

    model: object  # the (possibly DDP-wrapped) module
    loss_fn: object
    device: object
    amp_dtype: object
    memory_format: object
    context: DistributedContext


def _to_device(engine: Engine, images, masks):
    images = images.to(engine.device, non_blocking=True).contiguous(memory_format=engine.memory_format)
    return images, masks.to(engine.device, non_blocking=True)


def _any_rank(context: DistributedContext, flag: bool) -> bool:
    """True when any rank saw Ctrl-C, so that every rank stops after the same step."""
    if not context.enabled:
        return flag
    import torch

    from petseg.train.distributed import all_reduce_sum

    return bool(all_reduce_sum(context, torch.tensor([int(flag)])).item())


def train_one_epoch(engine: Engine, loader, optimizer, scheduler, scaler, stats: EpochStats, *,
                    stop: StopRequest, progress=None,
                    on_step: Callable[[int], None] | None = None) -> bool:
    """Train over `loader`, adding to `stats`. False when a stop was requested mid-epoch."""
    from petseg.train.runtime import autocast

    model = engine.model
    model.train()
    batches = iter(loader)
    while True:
        if _any_rank(engine.context, stop.requested):
            return False
        try:
            images, masks = next(batches)
        except StopIteration:
            return True
        images, masks = _to_device(engine, images, masks)
        with autocast(engine.device, engine.amp_dtype):
            logits = model(images)
        loss = engine.loss_fn(logits.float(), masks)
        if not math.isfinite(loss.item()):
            raise PetsegError(f"training diverged (loss {loss.item()}) at step {stats.steps + 1}; lower --lr")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        stats.add(loss.item(), masks, logits.detach())
        stats.steps += 1
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{stats.mean_loss:.4f}")
        if on_step is not None:
            on_step(stats.steps)


def validate(engine: Engine, loader) -> tuple[float, dict[str, float]]:
    """(mean loss, metrics) on the validation set at model resolution, reduced over ranks."""
    import torch

    from petseg.train.runtime import autocast

    engine.model.eval()
    stats = EpochStats()
    with torch.inference_mode():
        for images, masks in loader:
            images, masks = _to_device(engine, images, masks)
            with autocast(engine.device, engine.amp_dtype):
                logits = engine.model(images)
            # An unreadable validation image arrives with an all-ignored mask: it counts
            # in neither loss nor metrics (an all-ignored batch has no defined loss).
            labelled = int((masks != IGNORE_INDEX).flatten(1).any(dim=1).sum())
            loss = engine.loss_fn(logits.float(), masks).item() if labelled else 0.0
            stats.add(loss, masks, logits, count=labelled)
    return stats.reduce(engine.context)


def build_model(config: TrainConfig):
    from petseg.models import create_model

    # freeze_encoder stops the encoder's gradients and its BatchNorm statistics (UNet.train).
    return create_model(config.model, num_classes=3, pretrained=config.pretrained, weights=config.weights,
                        image_size=config.image_size, freeze_encoder=config.freeze_encoder, **config.model_options)


def fit(config: TrainConfig, *, resume: bool = False, force: bool = False,
        on_step: Callable[[int], None] | None = None, log: Callable[[str], None] | None = None) -> RunResult:
    """Train a model as `config` says, into config.out; see the module docstring for the files.

    Runs alone or under torchrun (DDP). `on_step(step_in_epoch)` is called after every
    optimizer step (progress reporting, tests). Returns the run's RunResult; a Ctrl-C
    returns one with interrupted=True after saving the checkpoint.
    """
    from petseg.train.runtime import resolve_device

    device_type = resolve_device(config.device).type
    context = setup_distributed(device_type)
    try:
        return _fit(config, context, resume=resume, force=force, on_step=on_step, log=log or _print)
    finally:
        cleanup_distributed(context)


def _print(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(message, file=sys.stdout)
    sys.stdout.flush()


def _fit(config: TrainConfig, context: DistributedContext, *, resume, force, on_step, log) -> RunResult:
    from tqdm import tqdm

    from petseg.train import data as run_data
    from petseg.train.losses import make_loss
    from petseg.train.optim import make_optimizer, make_scheduler
    from petseg.train.runtime import (make_grad_scaler, memory_format, resolve_amp_dtype, resolve_device,
                                      seed_everything)

    run_dir = Path(config.out)
    run_folder.prepare(run_dir, resume=resume, force=force, create=context.is_main)
    checkpoint = load_checkpoint(run_dir / run_folder.CHECKPOINT_FILE) if resume else None
    if checkpoint is not None:
        # Settings newer than the checkpoint held their defaults there.
        saved = asdict(TrainConfig.from_dict(checkpoint["config"]))
        run_folder.check_resume(run_dir, saved, asdict(config))
        run_folder.check_world_size(run_dir, checkpoint.get("world_size"), context.world_size)
    barrier(context)  # every rank has checked and read the run directory before rank 0 writes to it
    device = resolve_device(config.device, context.local_rank)
    if config.threads:
        import torch

        torch.set_num_threads(config.threads)
    amp_dtype = resolve_amp_dtype(config.amp, device)

    seed_everything(config.seed)
    splits = run_data.load_splits(config)
    model = build_model(config).to(device)
    mean, std = model.config.mean, model.config.std
    train_set, val_set = run_data.build_datasets(config, splits, mean, std)
    batch_size = run_data.per_process_batch_size(config, context)
    steps_per_epoch = math.ceil(len(run_data.train_order(train_set, context, config.seed, 0)) / batch_size)
    # The validation loader is reused every epoch, so its workers may stay; the training
    # loader is rebuilt per epoch (its order depends on the epoch) and must not keep them.
    val_loader = run_data.epoch_loader(val_set, run_data.val_order(val_set, context), batch_size, config.workers,
                                       config.seed, persistent=True)
    model = model.to(memory_format=memory_format(device))
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config, steps_per_epoch)
    scaler = make_grad_scaler(device, amp_dtype)
    early_stopping = EarlyStopping(config.monitor, config.patience)
    unwrapped = model
    if context.enabled:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    engine = Engine(model, make_loss(config.loss).to(device), device, amp_dtype, memory_format(device), context)

    history: list[dict[str, float]] = []
    start_epoch, best_epoch, best_miou, train_seconds, partial = 0, 0, -1.0, 0.0, None
    if checkpoint is not None:
        unwrapped.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        # --epochs may have changed: keep the new schedule's length (load_state_dict
        # updates the factor objects in place, hence the copies).
        fresh_lambdas = [copy.copy(factor) for factor in scheduler.lr_lambdas]
        scheduler.load_state_dict(checkpoint["scheduler"])
        scheduler.lr_lambdas = fresh_lambdas
        scaler.load_state_dict(checkpoint["scaler"])
        early_stopping.load_state_dict(checkpoint["early_stopping"])
        history = list(checkpoint["history"])
        start_epoch, best_epoch, best_miou = checkpoint["epoch"], checkpoint["best_epoch"], checkpoint["best_miou"]
        train_seconds, partial = checkpoint["train_seconds"], checkpoint["partial_epoch"]
        restore_rng_states(checkpoint["rng"])
        log(f"resuming {run_dir} at epoch {start_epoch + 1}"
            + (f", step {partial['stats']['steps'] + 1}" if partial else ""))
    if context.is_main:
        # Rewritten on every start, resumes included: a later plain --resume continues
        # with the settings of the latest one (e.g. its --epochs).
        write_text_atomic(run_dir / run_folder.CONFIG_FILE, config.to_json() + "\n")
    if context.is_main and checkpoint is None:
        from petseg.models.pretrained import describe_encoder_start

        log(f"training {config.model} ({config.recipe} recipe; "
            f"{describe_encoder_start(config.model, config.pretrained, config.weights)}) "
            f"on {len(splits.train)} images, validating on "
            f"{len(splits.val)} ({splits.val_source}); {device}, {context.world_size} process(es), "
            f"batch {config.batch_size}, {steps_per_epoch} steps/epoch")
        for unfit in splits.left_out:
            log(f"left out {unfit.sample.name}: {unfit.reason}" + ("" if unfit.broken else " (--keep-suspect keeps it)"))

    def save_state(epoch: int, partial_epoch: dict | None) -> None:
        save_checkpoint(run_dir / run_folder.CHECKPOINT_FILE, {
            "config": asdict(config), "model": unwrapped.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
            "early_stopping": early_stopping.state_dict(), "history": history, "epoch": epoch,
            "best_epoch": best_epoch, "best_miou": best_miou, "train_seconds": train_seconds,
            "partial_epoch": partial_epoch, "world_size": context.world_size,
        })

    stopped_reason, interrupted = f"reached {config.epochs} epochs", False
    if early_stopping.should_stop:
        stopped_reason = early_stopping.reason()
    with StopRequest() as stop:
        for epoch in range(start_epoch, config.epochs):
            if early_stopping.should_stop:
                break
            if partial is None:
                # Each epoch's randomness (augmentation, dropout) depends on (seed, epoch)
                # only, so a resumed run replays the uninterrupted one.
                seed_everything(config.seed * 1_000_003 + epoch)
                stats, skip, seconds_before = EpochStats(), 0, 0.0
            else:
                stats = EpochStats.from_state_dict(partial["stats"])
                skip, seconds_before = stats.steps * batch_size, partial["seconds"]
                partial = None
            order = run_data.train_order(train_set, context, config.seed, epoch)[skip:]
            loader = run_data.epoch_loader(train_set, order, batch_size, config.workers,
                                           config.seed * 1_000_003 + epoch)
            started = time.perf_counter()
            with tqdm(total=steps_per_epoch, initial=stats.steps, desc=f"epoch {epoch + 1}/{config.epochs}",
                      leave=False, dynamic_ncols=True, disable=not (context.is_main and config.progress)) as bar:
                finished = train_one_epoch(engine, loader, optimizer, scheduler, scaler, stats,
                                           stop=stop, progress=bar, on_step=on_step)
            if not finished:
                train_seconds += time.perf_counter() - started
                if context.is_main:
                    save_state(epoch, {"stats": stats.state_dict(),
                                       "seconds": seconds_before + time.perf_counter() - started})
                stopped_reason, interrupted = f"interrupted at epoch {epoch + 1}, step {stats.steps}", True
                break
            train = stats.reduce(context)
            val = validate(engine, val_loader)
            seconds = seconds_before + time.perf_counter() - started
            train_seconds += time.perf_counter() - started
            lr = max(group["lr"] for group in optimizer.param_groups)
            row = reporting.epoch_row(epoch + 1, lr, seconds, train, val)
            history.append(row)
            improved = row["val_miou"] > best_miou
            if improved:
                best_epoch, best_miou = epoch + 1, row["val_miou"]
            stop_early = early_stopping.update(row)
            if context.is_main:
                if improved:
                    reporting.save_best(unwrapped, run_dir)
                save_state(epoch + 1, None)
                reporting.write_reports(run_dir, history)
                log(reporting.summary_line(row, config.epochs, improved))
            barrier(context)
            if stop_early:
                stopped_reason = f"early stop: {early_stopping.reason()}"
                break
            if _any_rank(context, stop.requested):
                stopped_reason, interrupted = f"interrupted after epoch {epoch + 1}", True
                break

    best_metrics = {key[4:]: value for key, value in history[best_epoch - 1].items()
                    if key.startswith("val_")} if best_epoch else {}
    result = RunResult(run_dir, len(history), best_epoch, best_metrics, train_seconds, stopped_reason,
                       interrupted, history)
    if context.is_main:
        if not interrupted:
            reporting.write_summary(result, config, unwrapped, context)
        log(f"{stopped_reason}; best val mIoU {best_miou:.4f} at epoch {best_epoch}; "
            f"{train_seconds:.0f}s of training; files in {run_dir}"
            + (f"\nresume with: petseg train --out {run_dir} --resume" if interrupted else ""))
    return result
