"""Training recipes: every hyperparameter of a run in one typed, JSON-able config.

`default` is our recipe and TrainConfig's field defaults are its values; `seed`
reproduces the reference notebook. A recipe is only a set of starting values: every
field can be overridden (see petseg.train.configure.build_config), and the resolved
config is written into the run folder.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from petseg.errors import PetsegError, quoted
from petseg.limits import MAX_DATA_WORKERS, MAX_SEED, MAX_THREADS
from petseg.models.config import IMAGE_SIZE_RANGE
from petseg.train.setting_types import check_setting_types

RECIPES = ("seed", "default", "generalize")


# The recipes use 1e-3 to 3e-2 (encoder factor 0.1 to 1); these bounds leave room to
# experiment and stop values that only make NaN weights.
MAX_LR = 1
MAX_ENCODER_LR_FACTOR = 10


@dataclass
class TrainConfig:
    """A whole run. The defaults are the `default` recipe's (for a randomly initialised
    encoder and any model but unet_diy: see default_recipe for those two rules).

    Validated when built, so every TrainConfig in existence is a possible run. A new
    field needs a default that means "what runs did before it existed": configs and
    checkpoints written earlier are completed with it.
    """

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
    loss: str = "dice_ce"  # ce | dice_ce
    # Validate, save and bundle an exponential moving average of the weights (timm's
    # ModelEmaV3, warmed up) instead of the weights as trained; None: no average.
    ema_decay: float | None = None
    epochs: int = 30
    batch_size: int = 16
    # Early stopping: stop when any monitored quantity has not improved for `patience` epochs.
    patience: int = 8
    monitor: tuple[str, ...] = ("val_loss",)
    # Data.
    hflip: bool = True
    scale: tuple[float, float] | None = (0.75, 1.25)  # random zoom range; None: no zoom
    color_jitter: float = 0.1
    # More augmentation (petseg.data.augment.Augment, same names), all off by default.
    crop_scale: tuple[float, float] | None = None  # random resized crop, (min, max) share of the area
    rotation: float = 0.0  # degrees either way
    hue: float = 0.0
    gamma: float = 0.0
    grayscale: float = 0.0  # probability
    blur: float = 0.0  # probability
    noise: float = 0.0  # std of Gaussian pixel noise, share of the 0..255 range
    copy_paste: float = 0.0  # probability of pasting the pet onto another photo's background
    pet_recolor: float = 0.0  # probability of turning the pet's fur white, black or grey
    # Which photos: breeds by name (`Abyssinian`, `american_bulldog`, any case), None for all.
    breeds: tuple[str, ...] | None = None
    exclude_breeds: tuple[str, ...] | None = None
    # Samples `petseg data check` finds unfit are left out: broken files always, masks
    # without pet pixels unless this is set.
    keep_suspect: bool = False
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

    def __post_init__(self):
        check_setting_types(self, paths=("data", "out", "weights", "cache_dir"))
        # JSON has no tuples: configs read back from files arrive with lists.
        self.monitor = tuple(self.monitor)
        for name in ("scale", "crop_scale", "breeds", "exclude_breeds"):
            if getattr(self, name) is not None:
                setattr(self, name, tuple(getattr(self, name)))
        self.model_options = dict(self.model_options)
        self.validate()

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """A config from saved settings; settings newer than the file take their defaults."""
        unknown = sorted(set(values) - set(setting_names()))
        if unknown:
            raise PetsegError(f"config: unknown setting(s) {', '.join(unknown)}")
        return cls(**values)

    def validate(self) -> None:
        """Reject impossible values with a message naming the setting (a flag on the command line)."""
        checks = [
            (self.recipe in RECIPES, "recipe", f"must be one of {', '.join(RECIPES)}, got {quoted(self.recipe)}"),
            (self.epochs >= 1, "epochs", f"must be at least 1, got {quoted(self.epochs)}"),
            (self.batch_size >= 1, "batch_size", f"must be at least 1, got {quoted(self.batch_size)}"),
            (16 <= self.image_size <= IMAGE_SIZE_RANGE[1], "image_size",
             f"must be in 16..{IMAGE_SIZE_RANGE[1]}, got {quoted(self.image_size)}"),
            # Beyond these, training diverges to NaN within a step or two (lr 1e308 wrote NaN weights).
            (0 < self.lr <= MAX_LR, "lr", f"must be in (0, {MAX_LR}], got {quoted(self.lr)}"),
            (0 <= self.weight_decay <= 1, "weight_decay", f"must be in [0, 1], got {quoted(self.weight_decay)}"),
            (0 <= self.encoder_lr_factor <= MAX_ENCODER_LR_FACTOR, "encoder_lr_factor",
             f"must be in [0, {MAX_ENCODER_LR_FACTOR}], got {quoted(self.encoder_lr_factor)}"),
            (self.optimizer in ("adam", "adamw"), "optimizer", f"must be adam or adamw, got {quoted(self.optimizer)}"),
            (self.schedule in ("cosine", "exponential"), "schedule",
             f"must be cosine or exponential, got {quoted(self.schedule)}"),
            (self.loss in ("ce", "dice_ce"), "loss", f"must be ce or dice_ce, got {quoted(self.loss)}"),
            (self.patience >= 1, "patience", f"must be at least 1, got {quoted(self.patience)}"),
            # Longer than the run, the schedule would never reach its peak (1e308 overflowed into a traceback).
            (0 <= self.warmup_epochs <= self.epochs, "warmup_epochs",
             f"must be in 0..{quoted(self.epochs)} (the run's epochs), got {quoted(self.warmup_epochs)}"),
            (0 < self.decay_rate <= 1, "decay_rate", f"must be in (0, 1], got {quoted(self.decay_rate)}"),
            (self.ema_decay is None or 0 < self.ema_decay < 1, "ema_decay",
             f"must be between 0 and 1 (exclusive), got {quoted(self.ema_decay)}"),
            (self.decay_steps >= 1, "decay_steps", f"must be at least 1, got {quoted(self.decay_steps)}"),
            (0 <= self.seed <= MAX_SEED, "seed", f"must be in 0..{MAX_SEED}, got {quoted(self.seed)}"),
            (0 <= self.workers <= MAX_DATA_WORKERS, "workers",
             f"must be in 0..{MAX_DATA_WORKERS}, got {quoted(self.workers)}"),
            (self.threads is None or 1 <= self.threads <= MAX_THREADS, "threads",
             f"must be in 1..{MAX_THREADS}, got {quoted(self.threads)}"),
            (self.device in ("auto", "cpu", "cuda"), "device", f"must be auto, cpu or cuda, got {quoted(self.device)}"),
            (self.amp in ("auto", "bf16", "fp16", "off"), "amp",
             f"must be auto, bf16, fp16 or off, got {quoted(self.amp)}"),
            (self.val_fraction is None or 0 < self.val_fraction < 1,
             "val_fraction", f"must be between 0 and 1 (exclusive), got {quoted(self.val_fraction)}"),
            (self.limit is None or self.limit >= 1, "limit", f"must be at least 1, got {quoted(self.limit)}"),
            (self.train_split in ("trainval", "all"), "train_split",
             f"must be trainval or all, got {quoted(self.train_split)}"),
            (self.scale is None or (len(self.scale) == 2 and 0 < self.scale[0] <= self.scale[1]),
             "scale", f"must be MIN,MAX with 0 < MIN <= MAX, got {quoted(self.scale)}"),
            (bool(self.monitor) and all(m in ("train_loss", "val_loss", "val_miou") for m in self.monitor),
             "monitor", f"must name train_loss, val_loss or val_miou, got {quoted(list(self.monitor))}"),
        ]
        for ok, option, message in checks:
            if not ok:
                raise PetsegError(message, option=option)
        from petseg.data.augment import Augment
        from petseg.data.layouts import check_layout
        from petseg.models.config import check_options

        check_layout(self.layout)  # here, not first when the data loads after the run folder is made
        Augment.from_config(self)  # its knobs' ranges, named as the settings are
        # Before the run folder exists: a model that cannot be built must not leave an empty one.
        check_options(self.model_options, prefix="model_options.")


def setting_names() -> list[str]:
    return [f.name for f in fields(TrainConfig)]


def _is_mobilenet(model: str) -> bool:
    return "mobilenet" in model


def recipe_settings(recipe: str, model: str, *, pretrained: bool = False, weights: str | None = None) -> dict[str, Any]:
    """What `recipe` sets for `model` on top of TrainConfig's defaults."""
    if recipe == "seed":
        return seed_recipe(model)
    if recipe == "default":
        return default_recipe(model, from_scratch=not (pretrained or weights))
    if recipe == "generalize":
        return generalize_recipe(model, from_scratch=not (pretrained or weights))
    raise PetsegError(f"must be one of {', '.join(RECIPES)}, got {quoted(recipe)}", option="recipe")


def seed_recipe(model: str) -> dict[str, Any]:
    """The reference notebook's run, as written there."""
    settings: dict[str, Any] = dict(
        recipe="seed", image_size=224,
        optimizer="adam", lr=0.03, weight_decay=0.0,
        schedule="exponential", decay_rate=0.95, decay_steps=10_000, warmup_epochs=0.0,
        loss="ce", epochs=50, batch_size=128,
        patience=5, monitor=("train_loss", "val_loss"),
        hflip=True, scale=None, color_jitter=0.0,
    )
    if _is_mobilenet(model):
        # The notebook froze its ImageNet MobileNet encoders, trained only the decoder,
        # and used TensorFlow's pix2pix upsampling blocks for it.
        settings.update(freeze_encoder=True, model_options={"decoder": "pix2pix"})
    return settings


def default_recipe(model: str, *, from_scratch: bool = True) -> dict[str, Any]:
    """Our recipe: TrainConfig's defaults (AdamW, one warm-up epoch then cosine, Dice + CE,
    light scale/colour jitter) and two rules that depend on the model.

    A pretrained encoder is fine-tuned at a tenth of the decoder's lr so its ImageNet
    features are adjusted rather than overwritten; a randomly initialised encoder has
    nothing to protect and trains at the full lr.
    """
    settings: dict[str, Any] = {"recipe": "default", "encoder_lr_factor": 1.0 if from_scratch else 0.1}
    # The classic from-scratch U-Net has no BatchNorm-friendly ImageNet start; a
    # slightly higher lr gets it moving within the short budget.
    if model == "unet_diy":
        settings["lr"] = 2e-3
    return settings


def generalize_recipe(model: str, *, from_scratch: bool = True) -> dict[str, Any]:
    """The default recipe with the augmentation meant for pets the data lacks: fur colours
    and lighting (colour, hue, gamma, grayscale, blur, noise), framing (random resized
    crops, small rotations) and backgrounds (copy-paste). The bundled model's recipe since
    leave-one-breed-out (benchmarks/generalization.py) put it ahead of `default`'s settings
    on a breed never seen: MODEL_CARD.md, "Breeds it never saw".
    """
    return {
        **default_recipe(model, from_scratch=from_scratch), "recipe": "generalize",
        "color_jitter": 0.3, "hue": 0.05, "gamma": 0.3, "grayscale": 0.1, "blur": 0.2, "noise": 0.03,
        "crop_scale": (0.5, 1.0), "rotation": 10.0, "copy_paste": 0.3,
    }
