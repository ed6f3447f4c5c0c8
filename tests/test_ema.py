"""The moving average of the weights (--ema-decay): what it averages, what a run delivers,
and that an interrupted run resumes to the same average."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from petseg.errors import PetsegError, command_line_flag
from petseg.train import fit
from petseg.train.checkpoint import load_checkpoint
from petseg.train.setup import make_ema
from tests.test_train import assert_same_weights, tiny_config

DECAY = 0.5


def test_the_average_is_warmed_up_then_capped_at_the_decay():
    """timm's warm-up: decay 0 at the first step (the average starts at the trained weights,
    not the initial ones), then 1 - n^(-2/3) at the n-th step until that reaches the cap."""
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(100.0)  # the starting weights: the average must not remember them
    ema = make_ema(model, DECAY)
    expected = None
    for step, value in enumerate([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], start=1):
        with torch.no_grad():
            model.weight.fill_(value)
        ema.update(model, step=step)
        decay = min(DECAY, 1 - step ** (-2 / 3)) if step > 1 else 0.0
        expected = value if expected is None else decay * expected + (1 - decay) * value
        assert ema.module.weight.item() == pytest.approx(expected, rel=1e-6), step
    assert 1 - 2 ** (-2 / 3) < DECAY < 1 - 3 ** (-2 / 3)  # steps 3 to 6 above ran at the cap
    assert make_ema(model, None) is None


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5, 2.0])
def test_decay_outside_zero_to_one_is_refused_naming_the_flag(toy_data, tmp_path, decay):
    with pytest.raises(PetsegError) as raised:
        tiny_config(toy_data, tmp_path / "run", ema_decay=decay)
    assert raised.value.worded(command_line_flag).startswith(f"--ema-decay must be between 0 and 1 (exclusive), got {decay}")


@pytest.fixture(scope="module")
def ema_run(toy_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("ema") / "run"
    result = fit(tiny_config(toy_data, out, ema_decay=DECAY))
    assert not result.interrupted
    return out, result


def test_a_run_validates_saves_and_checkpoints_the_average(ema_run):
    from safetensors.torch import load_file

    out, result = ema_run
    checkpoint = load_checkpoint(out / "last.pt")
    assert checkpoint["ema"].keys() == checkpoint["model"].keys()
    moved = [name for name, tensor in checkpoint["model"].items()
             if tensor.is_floating_point() and not torch.allclose(tensor, checkpoint["ema"][name])]
    assert moved, "the average equals the trained weights"
    best = load_file(out / "best.safetensors")
    if result.best_epoch == result.epochs_completed:  # saved at the last epoch: the final average
        assert_same_weights(best, checkpoint["ema"])
    else:  # saved earlier: an average of earlier weights, neither final tensor set
        assert any(not torch.allclose(best[name].float(), checkpoint["ema"][name].float()) for name in moved)


def test_validation_scores_the_average(ema_run, toy_data):
    """The last epoch's validation figures are the final average's, recomputed here."""
    import json

    from petseg.train.distributed import DistributedContext
    from petseg.train.engine import Engine, validate
    from petseg.train.setup import build_model, setup

    out, _ = ema_run
    config = tiny_config(toy_data, out, ema_decay=DECAY)
    training = setup(config, DistributedContext(), log=lambda message: None)
    average = build_model(config)  # scored as a plain model: no moving average involved
    average.load_state_dict(load_checkpoint(out / "last.pt")["ema"])
    engine = Engine(average, training.engine.loss_fn, training.engine.device, None, training.engine.memory_format,
                    training.context)
    loss, metrics = validate(engine, training.val_loader)
    last = json.loads((out / "history.json").read_text())[-1]
    assert last["val_loss"] == pytest.approx(loss, abs=1e-5)
    assert last["val_miou"] == pytest.approx(metrics["miou"], abs=1e-5)


@pytest.mark.slow
def test_ctrl_c_mid_epoch_resumes_to_the_same_average(ema_run, toy_data, tmp_path):
    reference, _ = ema_run
    out = tmp_path / "interrupted"
    steps_seen = []

    def press_ctrl_c_in_epoch_two(step):
        steps_seen.append(step)
        if len(steps_seen) == 4:
            os.kill(os.getpid(), signal.SIGINT)

    assert fit(tiny_config(toy_data, out, ema_decay=DECAY), on_step=press_ctrl_c_in_epoch_two).interrupted
    assert not fit(tiny_config(toy_data, out, ema_decay=DECAY), resume=True).interrupted
    assert_same_weights(load_checkpoint(out / "last.pt")["ema"], load_checkpoint(reference / "last.pt")["ema"])


def test_a_checkpoint_without_its_average_is_one_line(ema_run, tmp_path, monkeypatch, capsys):
    import shutil

    from tests.test_train import _main_in_process

    out = shutil.copytree(ema_run[0], tmp_path / "run")
    good = load_checkpoint(out / "last.pt")
    missing = {key: value for key, value in good.items() if key != "ema"}
    for crafted in (missing, {**good, "ema": {"not.a.layer": torch.zeros(1)}}):
        torch.save(crafted, out / "last.pt")
        code, stderr = _main_in_process(monkeypatch, capsys, "train", "--out", str(out), "--resume", "--epochs", "3",
                                        "--no-progress")
        assert code == 2 and stderr.startswith(f"error: {out / 'last.pt'}: "), stderr
        assert len(stderr.strip().splitlines()) == 1, stderr
