"""One training step and one validation pass: train_one_epoch() and validate().

Both run alone or under DDP; every rank calls them, and validate() reduces its
numbers over the ranks.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Callable

from petseg.data.labels import IGNORE_INDEX
from petseg.errors import PetsegError
from petseg.train.distributed import DistributedContext
from petseg.train.epoch_stats import EpochStats
from petseg.train.pause import pause_point


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
    ema: object = None  # timm ModelEmaV3 over the bare model, or None

    @property
    def evaluated(self):
        """The weights validation scores: the moving average when there is one."""
        return self.model if self.ema is None else self.ema.module


def _to_device(engine: Engine, images, masks):
    images = images.to(engine.device, non_blocking=True).contiguous(memory_format=engine.memory_format)
    return images, masks.to(engine.device, non_blocking=True)


def any_rank(context: DistributedContext, flag: bool) -> bool:
    """True when any rank saw Ctrl-C, so that every rank stops after the same step."""
    if not context.enabled:
        return flag
    import torch

    from petseg.train.distributed import all_reduce_sum

    return bool(all_reduce_sum(context, torch.tensor([int(flag)])).item())


def bare_model(model):
    """The model inside a DDP wrapper (the moving average follows the bare module's weights)."""
    from torch.nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model


def train_one_epoch(engine: Engine, loader, optimizer, scheduler, scaler, stats: EpochStats, *,
                    stop: StopRequest, progress=None,
                    on_step: Callable[[int], None] | None = None) -> bool:
    """Train over `loader`, adding to `stats`. False when a stop was requested mid-epoch."""
    from petseg.train.runtime import autocast

    model = engine.model
    model.train()
    batches = iter(loader)
    while True:
        if any_rank(engine.context, stop.requested):
            return False
        try:
            images, masks = next(batches)
        except StopIteration:
            return True
        images, masks = _to_device(engine, images, masks)
        with autocast(engine.device, engine.amp_dtype):
            logits = model(images)
        loss = engine.loss_fn(logits.float(), masks)
        diverged = not math.isfinite(loss.item())
        # Every process stops at this step when any diverged: one stopping alone left the others
        # waiting in backward()'s all-reduce. Raised before the update; only Ctrl-C and an epoch's
        # end save (loop.py), so the checkpoint stays the last one. lr cannot change on --resume.
        if any_rank(engine.context, diverged):
            shown = f"train loss {loss.item()}" if diverged else "another process's train loss was not finite"
            raise PetsegError(f"training diverged at step {stats.steps + 1} of the epoch ({shown}); "
                              "nothing since the last checkpoint was saved",
                              advice="lower {lr} and start again with {force}")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        if engine.ema is not None:
            engine.ema.update(bare_model(model), step=scheduler.last_epoch)
        stats.add(loss.item(), masks, logits.detach())
        stats.steps += 1
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{stats.mean_loss:.4f}")
        if on_step is not None:
            on_step(stats.steps)
        pause_point("step")


def validate(engine: Engine, loader) -> tuple[float, dict[str, float]]:
    """(mean loss, metrics) on the validation set at model resolution, reduced over ranks."""
    import torch

    from petseg.train.runtime import autocast

    model = engine.evaluated
    model.eval()
    stats = EpochStats()
    with torch.inference_mode():
        for images, masks in loader:
            images, masks = _to_device(engine, images, masks)
            with autocast(engine.device, engine.amp_dtype):
                logits = model(images)
            # An unreadable validation image arrives with an all-ignored mask: it counts
            # in neither loss nor metrics (an all-ignored batch has no defined loss).
            labelled = int((masks != IGNORE_INDEX).flatten(1).any(dim=1).sum())
            loss = engine.loss_fn(logits.float(), masks).item() if labelled else 0.0
            stats.add(loss, masks, logits, count=labelled)
    return stats.reduce(engine.context)
