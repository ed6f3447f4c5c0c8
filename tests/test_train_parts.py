"""The training building blocks that need no model: recipes, schedules, early stopping,
checkpoints, history, curves and the Dice loss."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch

from petseg.errors import PetsegError, command_line_flag
from petseg.train import resolve_config
from petseg.train.checkpoint import load_checkpoint, save_checkpoint
from petseg.train.early_stopping import EarlyStopping
from petseg.train.history import read_history, write_history
from petseg.train.losses import DiceLoss, make_loss
from petseg.train.optim import ExponentialDecay, WarmupCosine, make_scheduler


def test_seed_recipe_is_the_notebooks_run():
    config = resolve_config("unet_mobilenetv2", "data", "out", "seed")
    assert (config.optimizer, config.lr, config.schedule) == ("adam", 0.03, "exponential")
    assert (config.decay_rate, config.decay_steps, config.loss) == (0.95, 10_000, "ce")
    assert (config.batch_size, config.epochs, config.patience, config.image_size) == (128, 50, 5, 224)
    assert set(config.monitor) == {"train_loss", "val_loss"}
    assert config.freeze_encoder and config.hflip
    assert not resolve_config("unet_diy", "data", "out", "seed").freeze_encoder


def test_default_recipe_fine_tunes_a_pretrained_encoder_slower():
    scratch = resolve_config("unet_mobilenetv2", "data", "out")
    pretrained = resolve_config("unet_mobilenetv2", "data", "out", pretrained=True)
    assert scratch.encoder_lr_factor == 1.0
    assert 0 < pretrained.encoder_lr_factor < 1
    assert pretrained.optimizer == "adamw" and pretrained.schedule == "cosine"


def test_overrides_replace_recipe_values_and_none_keeps_them():
    config = resolve_config("unet_diy", "data", "out", "seed", epochs=3, lr=None, batch_size=4)
    assert (config.epochs, config.batch_size, config.lr) == (3, 4, 0.03)


@pytest.mark.parametrize("override, option", [
    ({"epochs": 0}, "--epochs"), ({"lr": -1.0}, "--lr"), ({"device": "tpu"}, "--device"),
    ({"val_fraction": 1.5}, "--val-fraction"), ({"loss": "focal"}, "--loss"),
    ({"weight_decay": -1e-4}, "--weight-decay"), ({"decay_steps": 0}, "--decay-steps"), ({"seed": -1}, "--seed"),
    ({"image_size": 100_000}, "--image-size"), ({"threads": 100_000}, "--threads"), ({"workers": 100_000}, "--workers"),
    ({"workers": 1000}, "--workers"), ({"seed": 2**63}, "--seed"), ({"seed": 2**32}, "--seed"),
    ({"warmup_epochs": 1e308}, "--warmup-epochs"), ({"epochs": 3, "warmup_epochs": 3.5}, "--warmup-epochs"),
    # Learning rates that only make NaN weights (1e308 trained to NaN and saved them as the best model).
    ({"lr": 1e308}, "--lr must be in (0, 1], got 1e+308"), ({"lr": 1.5}, "--lr must be in (0, 1], got 1.5"),
    ({"lr": 0.0}, "--lr must be in (0, 1], got 0.0"),
    ({"weight_decay": 1e308}, "--weight-decay must be in [0, 1], got 1e+308"),
    ({"weight_decay": 2.0}, "--weight-decay must be in [0, 1], got 2.0"),
    ({"encoder_lr_factor": 1e308}, "--encoder-lr-factor must be in [0, 10], got 1e+308"),
    ({"encoder_lr_factor": 10.5}, "--encoder-lr-factor must be in [0, 10], got 10.5"),
    ({"encoder_lr_factor": -0.5}, "--encoder-lr-factor must be in [0, 10], got -0.5"),
])
def test_bad_values_name_their_option(override, option):
    with pytest.raises(PetsegError) as raised:
        resolve_config("unet_diy", "data", "out", **override)
    message = raised.value.worded(command_line_flag)
    # `option`: the flag alone, or the whole message where its wording (the allowed range) matters too.
    assert message.startswith(option if " " in option else option + " must be"), message


@pytest.mark.parametrize("name", ["amp", "device", "loss", "optimizer", "recipe", "schedule", "train_split"])
def test_a_100_kb_setting_is_echoed_cut_to_100_characters(tmp_path, name):
    from petseg.errors import ECHO_CHARACTERS
    from petseg.train.configure import read_config_file

    huge = "x" * 100_000
    config_file = tmp_path / "cfg.json"
    config_file.write_text(json.dumps({"model": "unet_diy", "data": "data", "out": "out", name: huge}))
    with pytest.raises(PetsegError) as raised:
        read_config_file(config_file)  # what `petseg train --config cfg.json` reads
    message = str(raised.value)
    shown = "'" + "x" * ECHO_CHARACTERS + "…'"  # the text up to 100 characters, quoted
    assert message.startswith(f"{config_file}: {name} must be ") and message.endswith(f", got {shown}"), message[:300]
    if name == "recipe":  # --recipe picks the recipe's settings before any config is built
        with pytest.raises(PetsegError) as raised:
            resolve_config("unet_diy", "data", "out", huge)
        assert str(raised.value).endswith(f", got {shown}") and len(str(raised.value)) < 200


def test_a_config_file_names_the_settings_it_lacks_and_takes_out_and_data_from_the_command_line(tmp_path):
    from petseg.train.configure import build_config, read_config_file

    config_file = tmp_path / "recipe.json"
    config_file.write_text(json.dumps({"epochs": 3}))
    with pytest.raises(PetsegError) as raised:
        read_config_file(config_file)
    assert str(raised.value) == f"{config_file}: missing setting(s) model, data, out"  # not TrainConfig's TypeError
    config = build_config(config_file=config_file, model="unet_diy", out=tmp_path / "run", data=tmp_path / "data")
    assert (config.model, config.out, config.data, config.epochs) == ("unet_diy", str(tmp_path / "run"),
                                                                     str(tmp_path / "data"), 3)


def test_an_unknown_layout_is_refused_with_the_config(tmp_path):
    config_file = tmp_path / "cfg.json"
    config_file.write_text(json.dumps({"model": "unet_diy", "data": "data", "out": "out", "layout": "nope"}))
    from petseg.train.configure import read_config_file

    with pytest.raises(PetsegError) as raised:
        read_config_file(config_file)  # before the run folder is made, not when the data loads
    assert str(raised.value) == f"{config_file}: layout 'nope' is not one of auto, oxford, folder"


# What a config file can hold that its setting's type cannot: one line naming the setting.
BAD_TYPES = [
    ({"epochs": "ten"}, "epochs must be an integer, got 'ten'"),
    ({"epochs": 1e308}, "epochs must be an integer, got 1e+308"),
    ({"image_size": True}, "image_size must be an integer, got True"),
    ({"lr": math.inf}, "lr must be a finite number, got inf"),
    ({"lr": 10**400}, "lr must be a finite number, got 1000"),  # no float holds it: float() overflowed
    ({"hflip": "yes"}, "hflip must be true or false, got 'yes'"),
    ({"model_options": "x"}, "model_options must be a mapping, got 'x'"),
    ({"model_options": {1: 2}}, "model_options must be a mapping"),
    ({"monitor": "val_loss"}, "monitor must be a list of texts, got 'val_loss'"),
    ({"scale": [1.0]}, "scale must be a list of 2 finite numbers or null, got [1.0]"),
    ({"mask_values": [1]}, "mask_values must be a text or null, got [1]"),
    ({"breeds": "x" * 1000}, "breeds must be a list of texts or null, got 'xxx"),
]


@pytest.mark.parametrize("values, words", BAD_TYPES, ids=[next(iter(values)) for values, _ in BAD_TYPES])
def test_settings_of_the_wrong_type_are_one_line(values, words):
    from petseg.train.recipes import TrainConfig

    with pytest.raises(PetsegError) as raised:
        TrainConfig.from_dict({"model": "unet_diy", "data": "data", "out": "out", **values})
    message = str(raised.value)
    assert message.startswith(words) and len(message) < 150, message


def test_unknown_recipe_is_a_user_error():
    with pytest.raises(PetsegError) as raised:
        resolve_config("unet_diy", "data", "out", "fancy")
    assert raised.value.worded(command_line_flag).startswith("--recipe must be one of")


def test_exponential_decay_is_a_staircase_like_keras():
    decay = ExponentialDecay(0.95, 10_000, staircase=True)
    assert decay(0) == decay(9_999) == 1.0
    assert decay(10_000) == pytest.approx(0.95, rel=1e-12)
    assert decay(25_000) == pytest.approx(0.95**2, rel=1e-12)


def test_warmup_cosine_rises_then_falls_to_zero():
    factor = WarmupCosine(total_steps=100, warmup_steps=10)
    assert factor(0) == pytest.approx(0.1, abs=1e-12)
    assert factor(9) == pytest.approx(1.0, abs=1e-12)
    assert factor(55) == pytest.approx(0.5, abs=1e-12)  # halfway through the cosine
    assert factor(100) == pytest.approx(0.0, abs=1e-12)
    values = [factor(step) for step in range(10, 101)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_scheduler_state_round_trips():
    config = resolve_config("unet_diy", "data", "out", epochs=2)
    layer = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(layer.parameters(), lr=config.lr)
    scheduler = make_scheduler(optimizer, config, steps_per_epoch=5)
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    restored_optimizer = torch.optim.SGD(layer.parameters(), lr=config.lr)
    restored = make_scheduler(restored_optimizer, config, steps_per_epoch=5)
    restored.load_state_dict(scheduler.state_dict())
    assert restored.get_last_lr() == pytest.approx(scheduler.get_last_lr(), rel=1e-12)


def test_early_stopping_stops_when_any_monitor_runs_out_of_patience():
    stopper = EarlyStopping(("train_loss", "val_loss"), patience=2)
    assert not stopper.update({"train_loss": 1.0, "val_loss": 1.0})
    assert not stopper.update({"train_loss": 0.9, "val_loss": 1.1})  # val: 1 epoch without improvement
    assert stopper.update({"train_loss": 0.8, "val_loss": 1.2})  # val: 2 -> stop
    assert "val_loss" in stopper.reason() and "train_loss" not in stopper.reason()


def test_early_stopping_treats_miou_as_higher_is_better_and_round_trips():
    stopper = EarlyStopping(("val_miou",), patience=1)
    stopper.update({"val_miou": 0.5})
    restored = EarlyStopping(("val_miou",), patience=1)
    restored.load_state_dict(stopper.state_dict())
    assert not restored.update({"val_miou": 0.6})
    assert restored.update({"val_miou": 0.55})


def test_checkpoint_round_trip_restores_rng_states(tmp_path):
    path = tmp_path / "last.pt"
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    save_checkpoint(path, {"epoch": 3, "weights": torch.arange(4.0), "history": [{"epoch": 1, "val_miou": 0.5}]})
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    state = load_checkpoint(path)
    from petseg.train.checkpoint import restore_rng_states

    restore_rng_states(state["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    assert state["epoch"] == 3 and torch.equal(state["weights"], torch.arange(4.0))
    # The file holds only tensors and plain values: the safe loader reads it.
    assert torch.load(path, weights_only=True)["history"][0]["val_miou"] == 0.5


def test_checkpoint_errors_name_the_file(tmp_path):
    with pytest.raises(PetsegError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(PetsegError, match="garbage.pt"):
        load_checkpoint(garbage)


def test_history_is_written_as_csv_and_json(tmp_path):
    rows = [{"epoch": 1, "lr": 0.1, "train_loss": 1.5, "val_miou": 0.25},
            {"epoch": 2, "lr": 0.05, "train_loss": 1.25, "val_miou": 0.5}]
    write_history(tmp_path, rows)
    assert read_history(tmp_path) == rows
    lines = (tmp_path / "history.csv").read_text().splitlines()
    assert lines[0].split(",")[:3] == ["epoch", "lr", "train_loss"]
    assert lines[2].split(",") == ["2", "0.05", "1.25", "0.5"]
    assert json.loads((tmp_path / "history.json").read_text())[1]["val_miou"] == 0.5


def test_missing_history_is_a_user_error(tmp_path):
    with pytest.raises(PetsegError, match="history.json"):
        read_history(tmp_path)


def test_curves_png_is_written(tmp_path):
    from PIL import Image

    from petseg.plots import write_curves

    rows = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e, "train_pixel_accuracy": 0.5 + e / 10,
             "val_pixel_accuracy": 0.45 + e / 10, "train_miou": 0.3 + e / 10, "val_miou": 0.25 + e / 10}
            for e in (1, 2, 3)]
    path = write_curves(rows, tmp_path / "curves.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 500


def test_dice_loss_is_zero_for_perfect_logits_and_ignores_padding():
    labels = torch.tensor([[[0, 1], [2, 255]]])
    perfect = torch.nn.functional.one_hot(labels.clamp(max=2), 3).permute(0, 3, 1, 2).float() * 50
    perfect[0, :, 1, 1] = torch.tensor([0.0, 50.0, 0.0])  # a wrong guess on the padded pixel
    assert DiceLoss(smooth=0.0)(perfect, labels).item() == pytest.approx(0.0, abs=1e-6)
    uniform = torch.zeros(1, 3, 2, 2)
    # Each class: intersection 1/3, cardinality 3 * 1/3 + 1 = 2 -> dice 1/3.
    assert DiceLoss(smooth=0.0)(uniform, labels).item() == pytest.approx(2 / 3, abs=1e-6)
    ce = make_loss("ce")(uniform, labels).item()
    assert ce == pytest.approx(math.log(3), abs=1e-6)
    # With the default smoothing of 1: dice (2/3 + 1) / (2 + 1) = 5/9 per class.
    assert make_loss("dice_ce")(uniform, labels).item() == pytest.approx(math.log(3) + 4 / 9, abs=1e-5)


def test_resume_refuses_changed_data_order_or_process_count(tmp_path):
    from dataclasses import asdict, replace

    from petseg.run_dir import check_resume, check_world_size
    from petseg.train import TrainConfig

    config = resolve_config("unet_diy", str(tmp_path / "data"), "out", batch_size=8, seed=1, val_fraction=0.2)
    saved = asdict(config)
    check_resume(tmp_path, saved, asdict(replace(config, epochs=99, workers=3, out="moved")))
    for name, value in (("batch_size", 4), ("seed", 2), ("data", str(tmp_path / "other")), ("val_fraction", 0.1),
                        ("train_split", "all"), ("lr", 0.5), ("scale", None), ("recipe", "seed")):
        with pytest.raises(PetsegError, match=f"trained with {name}="):
            check_resume(tmp_path, saved, asdict(replace(config, **{name: value})))
    check_world_size(tmp_path, 2, 2)
    with pytest.raises(PetsegError, match="2 process"):
        check_world_size(tmp_path, 2, 1)
    # A checkpoint from before --train-split existed trained on trainval, the default.
    del saved["train_split"]
    completed = asdict(TrainConfig.from_dict(saved))
    check_resume(tmp_path, completed, asdict(config))
    with pytest.raises(PetsegError, match="train_split"):
        check_resume(tmp_path, completed, asdict(replace(config, train_split="all")))


def test_dataclass_defaults_are_the_default_recipe():
    from dataclasses import asdict

    from petseg.train import TrainConfig

    built = resolve_config("unet_mobilenetv2", "data", "out")
    assert asdict(built) == asdict(TrainConfig("unet_mobilenetv2", "data", "out"))


def test_only_the_validation_loader_keeps_its_workers(toy_data, tmp_path):
    from petseg.data.dataset import SegmentationDataset
    from petseg.data.layouts import load_samples
    from petseg.train.data import epoch_loader

    dataset = SegmentationDataset(load_samples(toy_data, "all")[:2], 32, (0.5,) * 3, (0.5,) * 3,
                                  cache_dir=tmp_path / "cache")
    assert not epoch_loader(dataset, [0, 1], 1, 1, 0).persistent_workers  # rebuilt every epoch
    assert epoch_loader(dataset, [0, 1], 1, 1, 0, persistent=True).persistent_workers


def test_a_restored_schedule_keeps_its_step_and_takes_the_new_length(toy_data, tmp_path):
    """`--resume --epochs N`: the lr schedule continues from its step, stretched to N epochs."""
    from dataclasses import replace

    from petseg.train.checkpoint import capture_rng_states
    from petseg.train.distributed import DistributedContext
    from petseg.train.setup import setup

    config = resolve_config("unet_diy", str(toy_data), str(tmp_path / "run"), epochs=2, batch_size=4,
                            image_size=32, model_options={"width": 4}, progress=False)
    first = setup(config, DistributedContext(), print)
    for _ in range(4):  # the optimizer steps of one and a third epochs (3 per epoch)
        first.optimizer.step()
        first.scheduler.step()
    longer = setup(replace(config, epochs=4), DistributedContext(), print)
    longer.load_state_dict({**first.state_dict(), "rng": capture_rng_states()})
    factor = longer.scheduler.lr_lambdas[0]
    assert longer.scheduler.last_epoch == 4 and factor.total_steps == 4 * first.steps_per_epoch
    assert [group["lr"] for group in longer.optimizer.param_groups] == pytest.approx(
        [group["initial_lr"] * factor(4) for group in longer.optimizer.param_groups], rel=1e-12)
    assert factor(4) != first.scheduler.lr_lambdas[0](4)  # the longer schedule is not the old one


def test_a_run_folder_that_cannot_be_made_is_one_line(tmp_path):
    from petseg import run_dir

    (tmp_path / "a file").write_text("in the way")
    with pytest.raises(PetsegError, match=r"a file/run: cannot create the run folder \(Not a directory\)"):
        run_dir.prepare(tmp_path / "a file" / "run", resume=False, force=False)


@pytest.mark.parametrize("environment, words", [
    ({"WORLD_SIZE": "abc"}, "WORLD_SIZE='abc' must be a whole number, 0 or more (torchrun sets it)"),
    ({"WORLD_SIZE": "2"}, "RANK is not set, but WORLD_SIZE is: start distributed runs with torchrun"),
    ({"WORLD_SIZE": "2", "RANK": "2"}, "RANK='2' must be a whole number in 0..1 (torchrun sets it)"),
    ({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "-1"}, "LOCAL_RANK='-1' must be a whole number in 0..1"),
])
def test_a_broken_launcher_environment_is_one_line(monkeypatch, environment, words):
    from petseg.train.distributed import setup_distributed

    for variable in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    with pytest.raises(PetsegError) as raised:
        setup_distributed("cpu")
    assert str(raised.value).startswith(words)


def test_a_loss_that_turns_nan_mid_epoch_stops_before_the_step_with_the_epoch_ends_advice():
    from petseg.train.distributed import DistributedContext
    from petseg.train.engine import Engine, StopRequest, train_one_epoch
    from petseg.train.epoch_stats import EpochStats

    model = torch.nn.Conv2d(3, 3, 1)
    losses = iter([1.0, float("nan")])

    def loss_fn(logits, masks):  # finite, then NaN: what a too-high lr does a few steps in
        return logits.mean() * 0 + next(losses)

    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    engine = Engine(model, loss_fn, torch.device("cpu"), None, torch.contiguous_format, DistributedContext())
    batches = [(torch.ones(1, 3, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))] * 3
    stats = EpochStats()
    with pytest.raises(PetsegError) as raised:
        train_one_epoch(engine, batches, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0),
                        torch.amp.GradScaler("cpu", enabled=False), stats, stop=StopRequest())
    # The same advice as a NaN epoch's (loop.py): lr cannot change on --resume.
    assert raised.value.worded(command_line_flag) == (
        "training diverged at step 2 of the epoch (train loss nan); nothing since the last checkpoint was saved; "
        "lower --lr and start again with --force")
    assert stats.steps == 1  # the NaN step took no optimizer step


def test_an_empty_monitor_list_is_refused_not_a_silent_end_of_early_stopping():
    from petseg.train.recipes import TrainConfig

    with pytest.raises(PetsegError, match=r"^monitor must name train_loss, val_loss or val_miou, got \[\]$"):
        TrainConfig.from_dict({"model": "unet_diy", "data": "data", "out": "out", "monitor": []})
