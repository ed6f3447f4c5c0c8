"""Training: recipes, the loop, checkpoints, early stopping, DDP.

    from petseg.train import fit, resolve_config
    result = fit(resolve_config("unet_diy", data="pets", out="runs/diy", epochs=2))

Only light modules are imported here; torch loads when training starts.
"""

from petseg.train.configure import build_config, resolve_config
from petseg.train.recipes import RECIPES, TrainConfig


def fit(config: TrainConfig, **options):
    """Train a model into config.out; see petseg.train.loop.fit."""
    from petseg.train.loop import fit as run_fit

    return run_fit(config, **options)


__all__ = ["RECIPES", "TrainConfig", "build_config", "fit", "resolve_config"]
