"""Training recipes: every hyperparameter of a run in one typed, JSON-able config.

`seed` reproduces the reference notebook; `default` is our better recipe. A recipe
is only a set of starting values: every field can be overridden from the CLI, and
the resolved config is written into the run directory.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from petseg.errors import PetsegError

RECIPES = ("seed", "default")


@dataclass
class TrainConfig:
    model: str
    data: str
    out: str
    recipe: str = "default"
    # Model construction.
    image_size: int = 224
    pretrained: bool = False
    weights: str | None = None  # encoder weights file handed to create_model
    freeze_encoder: bool = False
    model_options: dict[str, Any] = field(default_factory=dict)
    # Optimisation.
    optimizer: str = "adamw"  # adam | adamw
    lr: float = 1e-3
    encoder_lr_factor: float = 1.0  # encoder lr = lr * factor (pretrained encoders move slowly)
    weight_decay: float = 1e-4
    schedule: str = "cosine"  # cosine (linear warm-up then cosine) | exponential (staircase decay)
    warmup_epochs: float = 1.0
    decay_rate: float = 0.95
    decay_steps: int = 10_000
    loss: str = "ce"  # ce | dice_ce
    epochs: int = 30
    batch_size: int = 16
    # Early stopping: stop when any monitored quantity has not improved for `patience` epochs.
    patience: int = 8
    monitor: tuple[str, ...] = ("val_loss",)
    # Data.
    hflip: bool = True
    scale: tuple[float, float] | None = None
    color_jitter: float = 0.0
    val_fraction: float | None = None  # None: validate on the dataset's `test` list; else hold out part of train_split
    # trainval, or all: every labelled image, for a final model once settings are chosen
    # (validation then runs on images it trained on: a fit check, not a held-out estimate).
    train_split: str = "trainval"
    layout: str = "auto"  # auto | oxford | folder (see petseg.data.layouts)
    mask_values: str | None = None  # folder layout: "0=background,255=pet"
    workers: int = 0
    cache_dir: str | None = None
    limit: int | None = None  # use only the first N training samples (smoke runs)
    # Runtime.
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    # CPU threads per process (None: torch's choice). 1 can be much faster on a small
    # CPU shared with other work: see benchmarks/train_throughput.py.
    threads: int | None = None
    amp: str = "auto"  # auto (bf16 if supported, else fp16 on CUDA; off on CPU) | bf16 | fp16 | off
    progress: bool = True

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise PetsegError(f"config: unknown setting(s) {', '.join(unknown)}")
        values = dict(values)
        for name in ("monitor", "scale"):
            if values.get(name) is not None:
                values[name] = tuple(values[name])
        return cls(**values)

    def validate(self) -> None:
        """Reject impossible values with a message naming the option."""
        checks = [
            (self.recipe in RECIPES, f"--recipe must be one of {', '.join(RECIPES)}, got {self.recipe!r}"),
            (self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}"),
            (self.image_size >= 16, f"--image-size must be at least 16, got {self.image_size}"),
            (self.lr > 0, f"--lr must be positive, got {self.lr}"),
            (self.weight_decay >= 0, f"--weight-decay must be >= 0, got {self.weight_decay}"),
            (self.encoder_lr_factor >= 0, f"--encoder-lr-factor must be >= 0, got {self.encoder_lr_factor}"),
            (self.optimizer in ("adam", "adamw"), f"--optimizer must be adam or adamw, got {self.optimizer!r}"),
            (self.schedule in ("cosine", "exponential"), f"--schedule must be cosine or exponential, got {self.schedule!r}"),
            (self.loss in ("ce", "dice_ce"), f"--loss must be ce or dice_ce, got {self.loss!r}"),
            (self.patience >= 1, f"--patience must be at least 1, got {self.patience}"),
            (self.workers >= 0, f"--workers must be >= 0, got {self.workers}"),
            (self.threads is None or self.threads >= 1, f"--threads must be at least 1, got {self.threads}"),
            (self.device in ("auto", "cpu", "cuda"), f"--device must be auto, cpu or cuda, got {self.device!r}"),
            (self.amp in ("auto", "bf16", "fp16", "off"), f"--amp must be auto, bf16, fp16 or off, got {self.amp!r}"),
            (self.val_fraction is None or 0 < self.val_fraction < 1,
             f"--val-fraction must be between 0 and 1 (exclusive), got {self.val_fraction}"),
            (self.limit is None or self.limit >= 1, f"--limit must be at least 1, got {self.limit}"),
            (self.train_split in ("trainval", "all"), f"--train-split must be trainval or all, got {self.train_split!r}"),
            (all(m in ("train_loss", "val_loss", "val_miou") for m in self.monitor),
             f"monitor must name train_loss, val_loss or val_miou, got {list(self.monitor)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise PetsegError(message)


def _is_mobilenet(model: str) -> bool:
    return "mobilenet" in model


def _is_from_scratch(config: TrainConfig) -> bool:
    return not (config.pretrained or config.weights)


def seed_recipe(model: str, data: str, out: str) -> TrainConfig:
    """The reference notebook's run, as written there."""
    return TrainConfig(
        model=model, data=data, out=out, recipe="seed",
        image_size=224,
        # The notebook froze the ImageNet MobileNet encoders and trained only the decoder.
        freeze_encoder=_is_mobilenet(model),
        optimizer="adam", lr=0.03, weight_decay=0.0,
        schedule="exponential", decay_rate=0.95, decay_steps=10_000, warmup_epochs=0.0,
        loss="ce", epochs=50, batch_size=128,
        patience=5, monitor=("train_loss", "val_loss"),
        hflip=True,
    )


def default_recipe(model: str, data: str, out: str, *, pretrained: bool = False, weights: str | None = None) -> TrainConfig:
    """Our recipe: AdamW, one warm-up epoch then cosine, Dice + CE, light scale/colour jitter.

    A pretrained encoder is fine-tuned at a tenth of the decoder's lr so its ImageNet
    features are adjusted rather than overwritten; a randomly initialised encoder has
    nothing to protect and trains at the full lr.
    """
    config = TrainConfig(
        model=model, data=data, out=out, recipe="default",
        pretrained=pretrained, weights=weights,
        image_size=224, freeze_encoder=False,
        optimizer="adamw", lr=1e-3, weight_decay=1e-4,
        schedule="cosine", warmup_epochs=1.0,
        loss="dice_ce", epochs=30, batch_size=16,
        patience=8, monitor=("val_loss",),
        hflip=True, scale=(0.75, 1.25), color_jitter=0.1,
    )
    config.encoder_lr_factor = 1.0 if _is_from_scratch(config) else 0.1
    # The classic from-scratch U-Net has no BatchNorm-friendly ImageNet start; a
    # slightly higher lr gets it moving within the short budget.
    if model == "unet_diy":
        config.lr = 2e-3
    return config


def resolve_config(model: str, data: str, out: str, recipe: str = "default", **overrides: Any) -> TrainConfig:
    """A recipe's values with the given overrides (None means 'keep the recipe's')."""
    if recipe not in RECIPES:
        raise PetsegError(f"--recipe must be one of {', '.join(RECIPES)}, got {recipe!r}")
    overrides = {name: value for name, value in overrides.items() if value is not None}
    if recipe == "seed":
        config = seed_recipe(model, data, out)
    else:
        config = default_recipe(model, data, out, pretrained=overrides.get("pretrained", False),
                                weights=overrides.get("weights"))
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise PetsegError(f"unknown training option(s): {', '.join(unknown)}")
    config = replace(config, **overrides)
    config.validate()
    return config
