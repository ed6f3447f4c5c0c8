"""The training run's data: which samples train and validate, and each epoch's loader.

Each epoch's sample order is a function of (seed, epoch) alone, through a
DistributedSampler that also shards the data when several processes train. A run
resumed at epoch k (or mid-epoch, skipping the batches already seen) therefore
meets exactly the batches the uninterrupted run met.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from petseg.errors import PetsegError
from petseg.train.distributed import DistributedContext
from petseg.train.recipes import TrainConfig


@dataclass
class Splits:
    train: list
    val: list
    val_source: str  # what the validation set is, for the log
    left_out: list = field(default_factory=list)  # petseg.data.check.Unfit: samples not used, and why


def load_splits(config: TrainConfig) -> Splits:
    """Training and validation samples: trainval (or all) -> test, or a seeded held-out fraction of either.

    Both come from the chosen breeds only (config.breeds / exclude_breeds), and samples
    that `petseg data check` finds unfit are left out of both: broken files always, masks
    without pet pixels unless config.keep_suspect.
    """
    from petseg.data.check import find_unfit
    from petseg.data.layouts import load_samples, parse_label_map

    label_map = parse_label_map(config.mask_values) if config.mask_values else None

    def samples(split: str) -> list:
        found = load_samples(config.data, split, layout=config.layout, label_map=label_map)
        if not (config.breeds or config.exclude_breeds):
            return found
        from petseg.data.breeds import breeds_in, select_breeds

        every_breed = breeds_in(load_samples(config.data, "all", layout=config.layout, label_map=label_map))
        return select_breeds(found, config.breeds, config.exclude_breeds, known=every_breed)

    pool = samples(config.train_split)
    if config.val_fraction is None:
        train = pool
        val = samples("test")
        source = "the dataset's test list"
        if config.train_split == "all":
            source += " (also trained on: a fit check, not a held-out score)"
        elif shared := len({s.name for s in train} & {s.name for s in val}):
            source += f" ({shared} of its photos are also in trainval: not held out)"  # `data check` flags them
        if not val:
            raise PetsegError(f"{config.data}: the test split is empty",
                              advice="validate on part of trainval with {val_fraction} 0.1")
    else:
        shuffled = list(pool)
        random.Random(config.seed).shuffle(shuffled)
        count = max(1, round(len(shuffled) * config.val_fraction))
        val, train = shuffled[:count], shuffled[count:]
        source = f"{config.val_fraction:g} of {config.train_split}, held out"
    if config.limit is not None:
        train = train[: config.limit]
    # Broken files cannot be trained on at all; suspect labels can be kept on purpose.
    left_out = [found for found in find_unfit(list({s.name: s for s in [*train, *val]}.values()))
                if found.broken or not config.keep_suspect]
    unfit = {found.sample.name for found in left_out}
    train = [sample for sample in train if sample.name not in unfit]
    val_names, val = {sample.name for sample in val}, [sample for sample in val if sample.name not in unfit]
    if not train:
        raise PetsegError(f"{config.data}: no training images in the {config.train_split} split"
                          + (" of the chosen breeds" if config.breeds or config.exclude_breeds else ""))
    if not val:
        first = next(found.reason for found in left_out if found.sample.name in val_names)
        raise PetsegError(f"{config.data}: every validation image ({source}) was left out as unfit; first: {first}")
    return Splits(train, val, source, left_out)


def build_datasets(config: TrainConfig, splits: Splits, mean, std):
    from petseg.data.dataset import Augment, SegmentationDataset

    augment = Augment.from_config(config)
    common = dict(image_size=config.image_size, mean=mean, std=std, cache_dir=config.cache_dir)
    return (SegmentationDataset(splits.train, augment=augment, **common),
            SegmentationDataset(splits.val, augment=None, **common))


def train_order(dataset, context: DistributedContext, seed: int, epoch: int) -> list[int]:
    """This rank's shuffled sample indices for an epoch (padded so all ranks take equal steps)."""
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(dataset, num_replicas=context.world_size, rank=context.rank, shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    return list(sampler)


def val_order(dataset, context: DistributedContext) -> list[int]:
    """This rank's share of the validation set: every image exactly once over all ranks."""
    return list(range(context.rank, len(dataset), context.world_size))


def per_process_batch_size(config: TrainConfig, context: DistributedContext) -> int:
    """--batch-size is the global batch: N processes each take 1/N of it, so a recipe
    means the same optimisation whatever the number of processes."""
    if config.batch_size % context.world_size:
        raise PetsegError(f"{config.batch_size} must be divisible by the {context.world_size} processes", option="batch_size")
    return config.batch_size // context.world_size


def epoch_loader(dataset, indices: list[int], batch_size: int, workers: int, seed: int, *,
                 persistent: bool = False):
    """A loader over the given indices in that order; `seed` fixes the workers' RNGs.

    persistent: keep the worker processes between passes (only for a loader that is reused).
    """
    from petseg.data.dataset import make_loader

    return make_loader(dataset, batch_size, shuffle=False, workers=workers, seed=seed, sampler=indices,
                       persistent=persistent)
