"""Learning-rate schedules, stepped once per optimizer step.

Each schedule is a picklable object returning the factor applied to every param
group's base lr, so LambdaLR's state_dict (and hence `--resume`) captures it whole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class ExponentialDecay:
    """Keras' ExponentialDecay: factor = rate ** (step / decay_steps), floored when staircase."""

    decay_rate: float = 0.95
    decay_steps: int = 10_000
    staircase: bool = True

    def __call__(self, step: int) -> float:
        exponent = step / self.decay_steps
        if self.staircase:
            exponent = math.floor(exponent)
        return self.decay_rate**exponent


@dataclass
class WarmupCosine:
    """Linear warm-up from ~0 to 1 over `warmup_steps`, then cosine down to `final_factor`."""

    total_steps: int
    warmup_steps: int = 0
    final_factor: float = 0.0

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        decay_steps = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        return self.final_factor + (1 - self.final_factor) * 0.5 * (1 + math.cos(math.pi * progress))


def make_scheduler(optimizer, config, steps_per_epoch: int):
    """The LambdaLR that a TrainConfig asks for."""
    from torch.optim.lr_scheduler import LambdaLR

    if config.schedule == "exponential":
        factor = ExponentialDecay(config.decay_rate, config.decay_steps, staircase=True)
    else:
        factor = WarmupCosine(
            total_steps=config.epochs * steps_per_epoch,
            warmup_steps=round(config.warmup_epochs * steps_per_epoch),
        )
    return LambdaLR(optimizer, factor)


def make_optimizer(model, config):
    """Adam or AdamW over the trainable parameters, the encoder at lr * encoder_lr_factor.

    Norm layers and biases get no weight decay (decaying them only fights the
    normalisation). Frozen parameters are left out entirely.
    """
    import torch

    encoder_ids = {id(p) for p in model.encoder.parameters()} if hasattr(model, "encoder") else set()
    groups: dict[tuple[bool, bool], list] = {}
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        key = (id(parameter) in encoder_ids, parameter.ndim > 1)
        groups.setdefault(key, []).append(parameter)
    param_groups = [
        {
            "params": params,
            "lr": config.lr * (config.encoder_lr_factor if in_encoder else 1.0),
            "weight_decay": config.weight_decay if decayed else 0.0,
            "name": ("encoder" if in_encoder else "decoder") + ("" if decayed else "_no_decay"),
        }
        for (in_encoder, decayed), params in sorted(groups.items())
    ]
    if not param_groups:
        from petseg.errors import PetsegError

        raise PetsegError(f"model {config.model}: no trainable parameters (is everything frozen?)")
    optimizer_class = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    # foreach: one batched update over all tensors; the per-tensor loop is slow on CPU.
    return optimizer_class(param_groups, lr=config.lr, foreach=True)
