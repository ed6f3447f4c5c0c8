"""End-to-end training runs on generated toy data: files, resume after kill -9 and Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from petseg.atomic import TEMPORARY_MARK
from petseg.errors import PetsegError, command_line_flag
from petseg.train import fit, resolve_config
from petseg.train.checkpoint import load_checkpoint

EPOCHS = 2
# Same machine, same threads, same order of operations: runs agree to rounding at most.
WEIGHT_TOLERANCE = 1e-5
TINY = ["--model", "unet_diy", "--width", "8", "--image-size", "64", "--batch-size", "4", "--no-progress"]


def tiny_config(data: Path, out: Path, **overrides):
    values = dict(epochs=EPOCHS, batch_size=4, image_size=64, model_options={"width": 8}, progress=False,
                  scale=(0.8, 1.2), color_jitter=0.1)  # augmentation on: its randomness must replay too
    values.update(overrides)
    return resolve_config("unet_diy", str(data), str(out), **values)


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "last.pt")["model"]


def assert_same_run(run_dir: Path, reference: Path) -> None:
    """Final weights, best model, best epoch and history equal the uninterrupted run's."""
    from safetensors.torch import load_file

    assert_same_weights(final_weights(run_dir), final_weights(reference))
    assert_same_weights(load_file(run_dir / "best.safetensors"), load_file(reference / "best.safetensors"))
    summary, expected = (json.loads((path / "summary.json").read_text()) for path in (run_dir, reference))
    assert summary["best_epoch"] == expected["best_epoch"] and summary["epochs"] == expected["epochs"]
    history, expected_history = (json.loads((path / "history.json").read_text()) for path in (run_dir, reference))
    for row, expected_row in zip(history, expected_history, strict=True):
        assert row["lr"] == pytest.approx(expected_row["lr"], rel=1e-9)
        assert row["val_miou"] == pytest.approx(expected_row["val_miou"], abs=1e-4)


def assert_same_weights(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(actual[name].float(), tensor.float(), atol=WEIGHT_TOLERANCE, rtol=0, msg=name)


@pytest.fixture(scope="module")
def reference_run(toy_data, tmp_path_factory) -> Path:
    """An uninterrupted run that the interrupted ones must reproduce."""
    out = tmp_path_factory.mktemp("reference") / "run"
    result = fit(tiny_config(toy_data, out))
    assert result.epochs_completed == EPOCHS and not result.interrupted
    return out


def test_run_writes_every_file(reference_run):
    from PIL import Image

    from petseg.models import load_model

    names = {path.name for path in reference_run.iterdir()}
    assert {"config.json", "history.csv", "history.json", "curves.png", "best.safetensors", "last.pt",
            "summary.json"} <= names
    assert not [name for name in names if TEMPORARY_MARK in name]
    config = json.loads((reference_run / "config.json").read_text())
    assert (config["model"], config["epochs"], config["image_size"]) == ("unet_diy", EPOCHS, 64)
    history = json.loads((reference_run / "history.json").read_text())
    assert [row["epoch"] for row in history] == list(range(1, EPOCHS + 1))
    for row in history:
        assert 0 <= row["val_pixel_accuracy"] <= 1 and 0 <= row["val_miou"] <= 1 and row["train_loss"] > 0
    assert len((reference_run / "history.csv").read_text().splitlines()) == EPOCHS + 1
    with Image.open(reference_run / "curves.png") as curves:
        assert curves.format == "PNG"
    model = load_model(reference_run / "best.safetensors")
    assert model.config.architecture == "unet_diy" and model.config.image_size == 64
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 3, 64, 64)
    checkpoint = torch.load(reference_run / "last.pt", weights_only=True)  # the safe loader reads it
    assert checkpoint["epoch"] == EPOCHS and set(checkpoint["rng"]) >= {"torch", "numpy", "python"}
    summary = json.loads((reference_run / "summary.json").read_text())
    best = max(history, key=lambda row: row["val_miou"])
    assert summary["best_val"]["miou"] == pytest.approx(best["val_miou"], abs=1e-12)


def test_training_reduces_the_training_loss(reference_run):
    history = json.loads((reference_run / "history.json").read_text())
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_existing_run_needs_resume_or_force(reference_run, toy_data):
    with pytest.raises(PetsegError) as raised:
        fit(tiny_config(toy_data, reference_run))
    assert str(raised.value).endswith("use resume to continue it or force to start over")
    assert raised.value.worded(command_line_flag).endswith("use --resume to continue it or --force to start over")


def test_resume_without_checkpoint_is_a_user_error(toy_data, tmp_path):
    with pytest.raises(PetsegError, match="nothing to resume"):
        fit(tiny_config(toy_data, tmp_path / "new"), resume=True)


@pytest.mark.parametrize("damage", ["best model deleted", "tensorboard is a file"])
def test_resume_refuses_a_run_folder_missing_what_it_cannot_remake(reference_run, toy_data, tmp_path, damage):
    """Without best.safetensors a resume ended "best val mIoU ... at epoch 1" with no best model; a
    file named tensorboard failed after the start with "File exists"."""
    import shutil

    out = shutil.copytree(reference_run, tmp_path / "run")
    config_written = (out / "config.json").stat().st_mtime_ns
    if damage == "best model deleted":
        (out / "best.safetensors").unlink()
        words = f"{out / 'best.safetensors'}: missing, though the checkpoint's best epoch is"
    else:
        shutil.rmtree(out / "tensorboard", ignore_errors=True)
        (out / "tensorboard").write_text("x")
        words = f"{out / 'tensorboard'}: is not a folder; the run writes its TensorBoard curves there, move it away"
    with pytest.raises(PetsegError) as raised:
        fit(tiny_config(toy_data, out, epochs=EPOCHS + 1), resume=True)
    assert str(raised.value).startswith(words), str(raised.value)
    assert (out / "config.json").stat().st_mtime_ns == config_written  # refused before anything is written


def test_a_model_that_cannot_be_built_leaves_no_run_folder(toy_data, tmp_path):
    """Refused model options: one line, exit 2, and none of the folders --out would have created."""
    out = tmp_path / "runs" / "new"
    for options, words in ((["--model", "unet_diy", "--width", "1000"], "model_options.width must be an integer in 1..64, got 1000"),
                           (["--model", "unet_mobilenetv2", "--width", "8"], "unknown option(s) width for unet_mobilenetv2")):
        finished = _run_cli("train", "--data", str(toy_data), "--image-size", "64", "--no-progress", "--epochs", "1",
                            "--out", str(out), *options)
        assert finished.returncode == 2, finished.stderr
        assert finished.stderr.startswith(f"error: {words}") and finished.stderr.count("\n") == 1, finished.stderr
        assert not (tmp_path / "runs").exists()


def _run_cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "petseg", *args], capture_output=True, text=True, **kwargs)


@pytest.mark.slow
def test_resume_after_kill_9_reaches_the_uninterrupted_weights(reference_run, toy_data, tmp_path):
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "petseg", "train", *TINY, "--data", str(toy_data), "--out", str(out),
               "--epochs", str(EPOCHS), "--scale", "0.8,1.2", "--color-jitter", "0.1"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (out / "last.pt").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()
    killed_at = load_checkpoint(out / "last.pt")["epoch"]
    assert 1 <= killed_at < EPOCHS

    resumed = _run_cli("train", "--out", str(out), "--resume", "--no-progress", timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {out} at epoch {killed_at + 1}" in resumed.stdout
    assert_same_weights(final_weights(out), final_weights(reference_run))
    history = json.loads((out / "history.json").read_text())
    reference_history = json.loads((reference_run / "history.json").read_text())
    assert [row["epoch"] for row in history] == list(range(1, EPOCHS + 1))
    assert history[-1]["val_miou"] == pytest.approx(reference_history[-1]["val_miou"], abs=1e-4)


@pytest.mark.slow
def test_ctrl_c_mid_epoch_checkpoints_and_resume_reaches_the_same_weights(reference_run, toy_data, tmp_path):
    out = tmp_path / "interrupted"
    steps_seen = []

    def press_ctrl_c_in_epoch_two(step):
        steps_seen.append(step)
        if len(steps_seen) == 4:  # epoch 2, step 1 of 3 (12 images, batch 4)
            os.kill(os.getpid(), signal.SIGINT)

    result = fit(tiny_config(toy_data, out), on_step=press_ctrl_c_in_epoch_two)
    assert result.interrupted and result.epochs_completed == 1
    checkpoint = load_checkpoint(out / "last.pt")
    assert checkpoint["epoch"] == 1 and checkpoint["partial_epoch"]["stats"]["steps"] == 1

    resumed = fit(tiny_config(toy_data, out), resume=True)
    assert not resumed.interrupted and resumed.epochs_completed == EPOCHS
    assert_same_run(out, reference_run)


def _main_in_process(monkeypatch, capsys, *args) -> tuple[int, str]:
    from petseg.cli import main

    monkeypatch.setattr(sys, "argv", ["petseg", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr().err


def test_cli_reports_bad_input_in_one_line(toy_data, tmp_path, monkeypatch, capsys):
    code, stderr = _main_in_process(monkeypatch, capsys, "train", "--model", "unet_nope", "--data", str(toy_data),
                                    "--out", str(tmp_path / "x"), "--no-progress")
    assert code == 2
    assert stderr.startswith("error: ") and "unet_nope" in stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1
    code, stderr = _main_in_process(monkeypatch, capsys, "train", "--out", str(tmp_path / "y"), "--resume")
    assert code == 2 and stderr.startswith("error: ") and "config.json" in stderr
    code, stderr = _main_in_process(monkeypatch, capsys, "train", *TINY, "--data", str(toy_data),
                                    "--out", str(tmp_path / "z"), "--scale", "big")
    assert code == 2 and "--scale" in stderr


def test_a_saved_config_replays_with_flags_on_top(reference_run, tmp_path, monkeypatch, capsys):
    """`--config FILE` is how a recipe file (or an earlier run) is reproduced."""
    out = tmp_path / "replayed"
    code, _ = _main_in_process(monkeypatch, capsys, "train", "--config", str(reference_run / "config.json"),
                               "--out", str(out), "--epochs", "1", "--no-progress")
    original = json.loads((reference_run / "config.json").read_text())
    replayed = json.loads((out / "config.json").read_text())
    assert code == 0 and (out / "best.safetensors").is_file()
    assert replayed.pop("out") == str(out) and replayed.pop("epochs") == 1
    original.pop("out"), original.pop("epochs")
    assert replayed == original
    code, stderr = _main_in_process(monkeypatch, capsys, "train", "--config", str(tmp_path / "absent.json"),
                                    "--out", str(tmp_path / "never"))
    assert code == 2 and "absent.json: no such config file" in stderr


def test_resume_changes_only_what_may_change_and_the_latest_start_wins(reference_run, toy_data, tmp_path,
                                                                       monkeypatch, capsys):
    import shutil

    out = shutil.copytree(reference_run, tmp_path / "longer")
    for flag, value in (("--lr", "0.5"), ("--batch-size", "2"), ("--seed", "3"), ("--width", "16")):
        code, stderr = _main_in_process(monkeypatch, capsys, "train", "--out", str(out), "--resume", flag, value)
        assert code == 2 and f"{flag} cannot change on resume" in stderr, stderr
        assert len(stderr.strip().splitlines()) == 1
    with pytest.raises(PetsegError, match="batch_size"):
        fit(tiny_config(toy_data, out, batch_size=2), resume=True)

    def press_ctrl_c(step):
        os.kill(os.getpid(), signal.SIGINT)

    # --resume --epochs 3, interrupted at once: a plain --resume afterwards still goes to 3.
    result = fit(tiny_config(toy_data, out, epochs=EPOCHS + 1),
                 resume=True, on_step=press_ctrl_c)
    assert result.interrupted and json.loads((out / "config.json").read_text())["epochs"] == EPOCHS + 1
    code, stderr = _main_in_process(monkeypatch, capsys, "train", "--out", str(out), "--resume", "--no-progress")
    assert code == 0, stderr
    assert [row["epoch"] for row in json.loads((out / "history.json").read_text())] == list(range(1, EPOCHS + 2))
    assert load_checkpoint(out / "last.pt")["world_size"] == 1


def test_config_that_is_a_folder_or_not_an_object_is_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "list.json").write_text("[1, 2]")
    for path, message in ((tmp_path, "config.json"), (tmp_path / "list.json", "expected a JSON object")):
        code, stderr = _main_in_process(monkeypatch, capsys, "train", "--config", str(path),
                                        "--out", str(tmp_path / "never"))
        assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1, stderr


def test_a_config_file_names_its_run_directory_and_keeps_its_settings(reference_run, toy_data, tmp_path,
                                                                      monkeypatch, capsys):
    """A recipe file is a whole run: its `out` and `progress` hold unless a flag says otherwise."""
    recipe = json.loads((reference_run / "config.json").read_text())
    recipe.update(out=str(tmp_path / "from-recipe"), epochs=1, progress=False, data=str(toy_data))
    (tmp_path / "recipe.json").write_text(json.dumps(recipe))
    code, stderr = _main_in_process(monkeypatch, capsys, "train", "--config", str(tmp_path / "recipe.json"),
                                    "--train-split", "all", "--decoder-channels", "32,16,8,8")
    assert code == 0, stderr
    assert "%|" not in stderr  # the recipe's progress=False held: no bar
    written = json.loads((tmp_path / "from-recipe" / "config.json").read_text())
    assert written["progress"] is False and written["train_split"] == "all"
    assert written["model_options"]["decoder_channels"] == [32, 16, 8, 8]
    from petseg.models.files import read_config

    assert read_config(tmp_path / "from-recipe" / "best.safetensors").options["decoder_channels"] == [32, 16, 8, 8]
    code, stderr = _main_in_process(monkeypatch, capsys, "train", *TINY, "--data", str(toy_data))
    assert code == 2 and "--out is needed" in stderr


def test_train_split_all_trains_on_every_labelled_image(toy_data):
    from petseg.data.layouts import load_samples
    from petseg.train.data import load_splits

    splits = load_splits(tiny_config(toy_data, "out", train_split="all"))
    assert len(splits.train) == len(load_samples(toy_data, "all")) > len(load_samples(toy_data, "trainval"))
    assert "not a held-out" in splits.val_source
    held_out = load_splits(tiny_config(toy_data, "out", train_split="all", val_fraction=0.25))
    assert len(held_out.val) == 6 and len(held_out.train) == 18
    assert not {sample.name for sample in held_out.val} & {sample.name for sample in held_out.train}
    with pytest.raises(PetsegError, match="train_split must be trainval or all"):
        tiny_config(toy_data, "out", train_split="everything")


# (flag, value, TrainConfig field, value): settings that make a resumed run another run.
CHANGED_ON_RESUME = [("--lr", "0.5", "lr", 0.5), ("--batch-size", "2", "batch_size", 2), ("--seed", "3", "seed", 3),
                     ("--width", "16", "model_options", {"width": 16}), ("--loss", "ce", "loss", "ce"),
                     ("--scale", "none", "scale", None), ("--recipe", "seed", "recipe", "seed"),
                     ("--train-split", "all", "train_split", "all"), ("--no-hflip", None, "hflip", False)]
# Settings that only say how the run is executed (the run is finished: nothing trains).
ALLOWED_ON_RESUME = [("--patience", "9", "patience", 9), ("--workers", "0", "workers", 0),
                     # torch's own count: a different one would change later tests' arithmetic order
                     ("--threads", str(torch.get_num_threads()), "threads", torch.get_num_threads()),
                     ("--device", "cpu", "device", "cpu"),
                     ("--amp", "off", "amp", "off"), ("--no-progress", None, "progress", False)]


def test_cli_and_library_share_one_resume_rule(reference_run, tmp_path, monkeypatch, capsys):
    import shutil
    from dataclasses import replace

    from petseg.run_dir import ResumeConflict
    from petseg.train.configure import read_config_file

    out = shutil.copytree(reference_run, tmp_path / "run")
    config = read_config_file(out / "config.json")
    for flag, value, name, setting in CHANGED_ON_RESUME:
        code, stderr = _main_in_process(monkeypatch, capsys, "train", "--out", str(out), "--resume", flag,
                                        *([value] if value else []))
        assert code == 2 and "cannot change on resume" in stderr and len(stderr.strip().splitlines()) == 1, stderr
        assert flag.replace("--no-", "--") in stderr.split(" cannot")[0], stderr  # names the flag
        if name == "model_options":
            setting = {**config.model_options, **setting}
        with pytest.raises(ResumeConflict) as refused:
            fit(replace(config, **{name: setting}), resume=True)
        assert refused.value.setting == name
    for flag, value, name, setting in ALLOWED_ON_RESUME:
        code, stderr = _main_in_process(monkeypatch, capsys, "train", "--out", str(out), "--resume", flag,
                                        *([value] if value else []))
        assert code == 0, (flag, stderr)
        assert not fit(replace(config, **{name: setting}), resume=True).interrupted


def _train_until_paused(out: Path, toy_data: Path, pause: str, tmp_path: Path) -> None:
    """Start `petseg train` with the test pause hook and kill -9 it once it has paused."""
    marker = tmp_path / "paused"
    # Progress bars on (the default): a log that is not a terminal must still get plain lines.
    command = [sys.executable, "-m", "petseg", "train", *[a for a in TINY if a != "--no-progress"],
               "--data", str(toy_data), "--out", str(out), "--epochs", str(EPOCHS), "--scale", "0.8,1.2",
               "--color-jitter", "0.1"]
    env = {**os.environ, "PETSEG_TEST_PAUSE": f"{pause}:{marker}"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 180
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL and marker.exists(), process.stderr.read().decode()[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("pause, leftover", [
    ("step:5", False),  # epoch 2, step 2 of 3: killed in the middle of an epoch
    ("checkpoint-write:2", True),  # epoch 2's checkpoint written to its temporary file, not yet renamed
])
def test_kill_9_mid_epoch_or_mid_checkpoint_write_resumes_to_the_same_weights(reference_run, toy_data, tmp_path,
                                                                              pause, leftover):
    out = tmp_path / "killed"
    _train_until_paused(out, toy_data, pause, tmp_path)
    assert load_checkpoint(out / "last.pt")["epoch"] == 1  # the last whole checkpoint
    assert bool(list(out.glob(f".last.pt{TEMPORARY_MARK}*"))) == leftover

    resumed = _run_cli("train", "--out", str(out), "--resume", timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {out} at epoch 2" in resumed.stdout
    assert_same_run(out, reference_run)
    assert not [path.name for path in out.iterdir() if TEMPORARY_MARK in path.name]
    # Not a terminal: one plain line per epoch, no progress-bar redraws.
    assert "\r" not in resumed.stdout + resumed.stderr
    assert [line for line in resumed.stdout.splitlines() if line.startswith("epoch ")][0].startswith("epoch 2/2 ")
    assert resumed.stdout.count("epoch 2/2 ") == 1


def _fail_writes_after(monkeypatch, allowed: int) -> list[int]:
    """Make every fsync after the first `allowed` fail as on a full disk; returns the call count."""
    import errno

    calls = [0]
    real_fsync = os.fsync

    def fsync(descriptor):
        calls[0] += 1
        if calls[0] > allowed:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)
    return calls


def test_disk_full_is_one_line_leaves_no_half_file_and_the_run_resumes(reference_run, toy_data, tmp_path,
                                                                       monkeypatch, capsys):
    out = tmp_path / "full"
    # config.json, then epoch 1's files (model, checkpoint, 2 history files, curves): the disk fills in epoch 2.
    _fail_writes_after(monkeypatch, allowed=6)
    args = ["train", *TINY, "--data", str(toy_data), "--out", str(out), "--epochs", str(EPOCHS),
            "--scale", "0.8,1.2", "--color-jitter", "0.1"]
    code, stderr = _main_in_process(monkeypatch, capsys, *args)
    assert code != 0 and len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith(f"error: {out}/") and "No space left on device" in stderr and "--resume" in stderr
    assert not [path.name for path in out.iterdir() if TEMPORARY_MARK in path.name]
    assert load_checkpoint(out / "last.pt")["epoch"] == 1
    monkeypatch.undo()  # space freed
    code, stderr = _main_in_process(monkeypatch, capsys, "train", "--out", str(out), "--resume", "--no-progress")
    assert code == 0, stderr
    assert_same_run(out, reference_run)


def _weights_turn_nan_before_validating_epoch(monkeypatch, diverging_epoch: int) -> None:
    """What a too-high lr does: a step leaves NaN weights behind a finite training loss."""
    import petseg.train.loop as loop

    real_validate, epochs_seen = loop.validate, []

    def validate(engine, loader):
        epochs_seen.append(len(epochs_seen) + 1)
        if epochs_seen[-1] == diverging_epoch:
            with torch.no_grad():
                for parameter in engine.evaluated.parameters():
                    parameter.fill_(float("nan"))
        return real_validate(engine, loader)

    monkeypatch.setattr(loop, "validate", validate)


def test_a_diverged_epoch_is_one_line_and_keeps_the_last_good_epochs_files(reference_run, toy_data, tmp_path,
                                                                            monkeypatch, capsys):
    from safetensors.torch import load_file

    out = tmp_path / "diverged"
    _weights_turn_nan_before_validating_epoch(monkeypatch, diverging_epoch=2)
    code, stderr = _main_in_process(monkeypatch, capsys, "train", *TINY, "--data", str(toy_data), "--out", str(out),
                                    "--epochs", str(EPOCHS), "--scale", "0.8,1.2", "--color-jitter", "0.1")
    assert (code, stderr) == (2, "error: training diverged at epoch 2 (val loss nan); "
                                 "lower --lr and start again with --force\n")
    # Epoch 2 was neither the best model nor checkpointed: every file is still epoch 1's.
    checkpoint = load_checkpoint(out / "last.pt")
    assert (checkpoint["epoch"], checkpoint["best_epoch"]) == (1, 1)
    assert [row["epoch"] for row in json.loads((out / "history.json").read_text())] == [1]
    best = load_file(out / "best.safetensors")
    assert all(bool(tensor.isfinite().all()) for tensor in best.values())
    assert_same_weights(best, checkpoint["model"])
    assert not (out / "summary.json").exists()
    monkeypatch.undo()  # the cause gone: the checkpoint resumes into the uninterrupted run
    code, stderr = _main_in_process(monkeypatch, capsys, "train", "--out", str(out), "--resume", "--no-progress")
    assert code == 0, stderr
    assert_same_run(out, reference_run)


def _crafted_checkpoints(good: dict) -> dict[str, object]:
    """File name -> what to write there instead of a good checkpoint."""
    from argparse import Namespace  # any pickled object: the safe loader refuses it

    import copy

    broken_model = {**good, "model": {"not.a.layer": torch.zeros(1)}}
    wrong_moment = copy.deepcopy(good)
    first = next(iter(wrong_moment["optimizer"]["state"].values()))
    first["exp_avg"] = torch.zeros(1)  # Adam's moment for another parameter's shape
    nan_moment = copy.deepcopy(good)
    first = next(iter(nan_moment["optimizer"]["state"].values()))
    first["exp_avg_sq"] = torch.full_like(first["exp_avg_sq"], float("nan"))  # every later step NaN
    nan_schedule = copy.deepcopy(good)
    nan_schedule["scheduler"]["last_epoch"] = float("nan")  # a NaN learning rate from the first step
    stretched_keys = copy.deepcopy(good)  # 600 million of them took restoring to 3.3 GB, and it resumed
    stretched_keys["rng"]["numpy"]["keys"] = torch.zeros(1, dtype=torch.int64).expand(10_000_000)
    from tests.test_hostile_checkpoints import deflated  # a 3.4 MB file of them took loading to 3 GB

    inflating = deflated({**good, "junk": torch.zeros(64 * 2**20, dtype=torch.uint8)})
    return {"empty": b"", "garbage": b"PK\x03\x04 not a torch file at all", "pickled-object": Namespace(format=1),
            "not-a-dict": [1, 2, 3], "missing-keys": {"format": 1, "config": good["config"]},
            "foreign-weights": broken_model, "bad-config": {**good, "config": {"model": 5}},
            # Each of these loaded and then failed (or trained on) after an epoch's work.
            "history-of-numbers": {**good, "history": [1, 2, 3]}, "history-text": {**good, "history": "abc"},
            "epoch-huge": {**good, "epoch": 10**9}, "epoch-fraction": {**good, "epoch": 1.5},
            "best-miou-nan": {**good, "best_miou": float("nan")},
            "train-seconds-huge": {**good, "train_seconds": 10**400},  # beyond any float: OverflowError
            "unfinished-epoch": {**good, "partial_epoch": {"stats": 5, "seconds": 1.0}},
            "optimizer-moment-shape": wrong_moment, "optimizer-moment-nan": nan_moment,
            "schedule-step-nan": nan_schedule, "rng-states": {**good, "rng": {"torch": torch.zeros(3)}},
            "rng-keys-stretched": stretched_keys, "inflating-records": inflating}


def test_broken_checkpoints_are_one_line_and_the_run_resumes_once_fixed(reference_run, tmp_path, monkeypatch,
                                                                       capsys):
    import shutil

    out = shutil.copytree(reference_run, tmp_path / "run")
    good_bytes = (out / "last.pt").read_bytes()
    good = load_checkpoint(out / "last.pt")
    others = {path.name: path.read_bytes() for path in out.iterdir() if path.is_file() and path.name != "last.pt"}
    for name, content in _crafted_checkpoints(good).items():
        if isinstance(content, bytes):
            (out / "last.pt").write_bytes(content)
        else:
            torch.save(content, out / "last.pt")
        code, stderr = _main_in_process(monkeypatch, capsys, "train", "--out", str(out), "--resume", "--no-progress")
        assert code == 2 and stderr.startswith(f"error: {out / 'last.pt'}: "), (name, stderr)
        assert len(stderr.strip().splitlines()) == 1, (name, stderr)
        # torch's own message says the file "can still be loaded" with weights_only=False: never relayed.
        assert not [advice for advice in ("weights_only", "weights only", "can still be loaded")
                    if advice in stderr.lower()], stderr
        unchanged = {path.name: path.read_bytes() for path in out.iterdir() if path.is_file() and path.name != "last.pt"}
        assert unchanged == others, name  # nothing written, nothing half-written
    (out / "last.pt").write_bytes(good_bytes)  # the cause fixed
    code, stderr = _main_in_process(monkeypatch, capsys, "train", "--out", str(out), "--resume", "--no-progress")
    assert code == 0, stderr


def test_tensorboard_scalars_match_the_history(reference_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # The list: loss, accuracy, mIoU and fg IoU (train and val) and the lr, per epoch.
    tags = {"lr": "lr"}
    for quantity, column in (("loss", "loss"), ("accuracy", "pixel_accuracy"), ("miou", "miou"), ("fg_iou", "fg_iou")):
        tags.update({f"{quantity}/{split}": f"{split}_{column}" for split in ("train", "val")})
    events = EventAccumulator(str(reference_run / "tensorboard"))
    events.Reload()
    history = json.loads((reference_run / "history.json").read_text())
    assert set(events.Tags()["scalars"]) == set(tags)
    for tag, column in tags.items():
        points = events.Scalars(tag)
        assert [point.step for point in points] == [row["epoch"] for row in history], tag
        for point, row in zip(points, history):
            assert point.value == pytest.approx(row[column], rel=1e-6, abs=1e-7), tag
