"""Everything a run builds once from its config: model, data, optimizer, schedule.

Training holds it, and its state_dict()/load_state_dict() are the checkpoint: what
is saved and what is restored are written down once, side by side.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from petseg.run_dir import CHECKPOINT_FILE
from petseg.train.distributed import DistributedContext
from petseg.train.early_stopping import EarlyStopping
from petseg.train.engine import Engine
from petseg.train.recipes import TrainConfig
from petseg.train.state import LoopState


@dataclass
class Training:
    config: TrainConfig
    context: DistributedContext
    run_dir: Path
    model: Any  # the bare model (not DDP-wrapped): what is saved
    engine: Engine  # holds the model as trained (DDP-wrapped under torchrun)
    optimizer: Any
    scheduler: Any
    scaler: Any
    train_set: Any
    val_loader: Any
    batch_size: int  # per process
    steps_per_epoch: int
    state: LoopState
    description: str  # the run's first log line
    log: Callable[[str], None]

    @property
    def delivered_model(self):
        """What the run validates, saves as its best model and bundles: the moving average
        of the weights when the config keeps one, else the model as trained (bare, not
        the DDP wrapper that engine.model may be)."""
        return self.model if self.engine.ema is None else self.engine.ema.module

    def state_dict(self) -> dict[str, Any]:
        ema = {} if self.engine.ema is None else {"ema": self.engine.ema.module.state_dict()}
        return {"config": asdict(self.config), "model": self.model.state_dict(), **ema,
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(), "world_size": self.context.world_size, **self.state.state_dict()}

    def load_state_dict(self, checkpoint: dict[str, Any]) -> None:
        from petseg.train.checkpoint import restore_rng_states

        self.model.load_state_dict(checkpoint["model"])
        if self.engine.ema is not None:
            self.engine.ema.module.load_state_dict(checkpoint["ema"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        check_optimizer_state(self.optimizer)
        # --epochs may have changed: keep the new schedule's length (load_state_dict
        # updates the factor objects in place, hence the copies).
        fresh_factors = [copy.copy(factor) for factor in self.scheduler.lr_lambdas]
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.scheduler.lr_lambdas = fresh_factors
        check_schedule_step(self.scheduler.last_epoch)
        # The optimizer saved the old schedule's lr for the coming step: take the new one's.
        for group, factor in zip(self.optimizer.param_groups, fresh_factors):
            group["lr"] = group["initial_lr"] * factor(self.scheduler.last_epoch)
        self.scaler.load_state_dict(checkpoint["scaler"])
        self.state.load_state_dict(checkpoint)
        try:
            restore_rng_states(checkpoint["rng"])  # last: building the run drew from the RNGs
        except (KeyError, TypeError, ValueError, AttributeError, RuntimeError, IndexError) as error:
            raise ValueError(f"its random-number states are unreadable ({str(error)[:100]})") from None

    def save_checkpoint(self) -> None:
        from petseg.run_dir import writing
        from petseg.train.checkpoint import save_checkpoint

        path = self.run_dir / CHECKPOINT_FILE
        with writing(path):
            save_checkpoint(path, self.state_dict())


def build_model(config: TrainConfig):
    from petseg.models import create_model

    # freeze_encoder stops the encoder's gradients and its BatchNorm statistics (UNet.train).
    return create_model(config.model, num_classes=3, pretrained=config.pretrained, weights=config.weights,
                        image_size=config.image_size, freeze_encoder=config.freeze_encoder, **config.model_options)


def setup(config: TrainConfig, context: DistributedContext, log: Callable[[str], None]) -> Training:
    import torch

    from petseg.train import data as run_data
    from petseg.train.losses import make_loss
    from petseg.train.optim import make_optimizer, make_scheduler
    from petseg.train.runtime import (make_grad_scaler, memory_format, resolve_amp_dtype, resolve_device,
                                      seed_everything)

    device = resolve_device(config.device, context.local_rank)
    if config.threads:
        torch.set_num_threads(config.threads)
    amp_dtype = resolve_amp_dtype(config.amp, device)
    seed_everything(config.seed)
    splits = run_data.load_splits(config)
    model = build_model(config).to(device)
    train_set, val_set = run_data.build_datasets(config, splits, model.config.mean, model.config.std)
    batch_size = run_data.per_process_batch_size(config, context)
    steps_per_epoch = math.ceil(len(run_data.train_order(train_set, context, config.seed, 0)) / batch_size)
    # The validation loader is reused every epoch, so its workers may stay; the training
    # loader is rebuilt per epoch (its order depends on the epoch) and must not keep them.
    val_loader = run_data.epoch_loader(val_set, run_data.val_order(val_set, context), batch_size, config.workers,
                                       config.seed, persistent=True)
    model = model.to(memory_format=memory_format(device))
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config, steps_per_epoch)
    trained = model
    if context.enabled:
        from torch.nn.parallel import DistributedDataParallel

        trained = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    engine = Engine(trained, make_loss(config.loss).to(device), device, amp_dtype, memory_format(device), context,
                    ema=make_ema(model, config.ema_decay))
    from petseg.models.pretrained import describe_encoder_start

    encoder_start = describe_encoder_start(config.model, config.pretrained, config.weights)
    description = (f"training {config.model} ({config.recipe} recipe; {encoder_start}) on {len(splits.train)} images, "
                   f"validating on {len(splits.val)} ({splits.val_source}); {device}, {context.world_size} process(es), "
                   f"batch {config.batch_size}, {steps_per_epoch} steps/epoch")
    for unfit in splits.left_out:  # once, in the description: a resumed run does not repeat them
        description += f"\nleft out {unfit.sample.name}: {unfit.reason}" + ("" if unfit.broken else " (--keep-suspect keeps it)")
    return Training(config, context, Path(config.out), model, engine, optimizer, scheduler,
                    make_grad_scaler(device, amp_dtype), train_set, val_loader, batch_size, steps_per_epoch,
                    LoopState(EarlyStopping(config.monitor, config.patience)), description, log)


def make_ema(model, decay: float | None):
    """timm's moving average of `model`'s weights and buffers, or None. Warmed up (decay
    1 - n^(-2/3) at the n-th step, capped at `decay`), so the first steps' average is not
    dominated by the starting weights however short the run."""
    if decay is None:
        return None
    from timm.utils.model_ema import ModelEmaV3

    return ModelEmaV3(model, decay=decay, use_warmup=True)


def check_optimizer_state(optimizer) -> None:
    """ValueError if a loaded optimizer's moments do not fit its parameters: the first step
    would fail on them only after a whole epoch's data loading."""
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            for name, value in optimizer.state.get(parameter, {}).items():
                if hasattr(value, "shape") and value.dim() > 0 and value.shape != parameter.shape:
                    raise ValueError(f"its optimizer's {name} has shape {tuple(value.shape)} "
                                     f"for a parameter of shape {tuple(parameter.shape)}")
                if hasattr(value, "isfinite") and not bool(value.isfinite().all()):
                    # A NaN moment or step count makes every later step NaN, without an error.
                    raise ValueError(f"its optimizer's {name} holds values that are not finite")


def check_schedule_step(step) -> None:
    """ValueError unless the schedule's step count is a whole number (a NaN one gave every step a NaN lr)."""
    from petseg.errors import quoted
    from petseg.limits import is_whole_number

    if not is_whole_number(step, 0):
        raise ValueError(f"its schedule's step count {quoted(step)} is not a whole number")
