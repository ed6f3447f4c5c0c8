"""`torchrun --nproc_per_node 2 -m petseg train ...` on CPU with gloo, on toy data."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from petseg.train.checkpoint import load_checkpoint


def _validate_single_process(run_dir, data):
    """Recompute the last epoch's validation metrics in one process from the saved weights
    (their moving average when the run kept one: what it validated)."""
    from petseg.train import TrainConfig
    from petseg.train.data import build_datasets, epoch_loader, load_splits
    from petseg.train.distributed import DistributedContext
    from petseg.train.engine import Engine, validate
    from petseg.train.checkpoint import load_final_weights
    from petseg.train.setup import build_model
    from petseg.train.losses import make_loss
    from petseg.train.runtime import memory_format

    config = TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    model = build_model(config)
    load_final_weights(model, run_dir / "last.pt")
    _, val_set = build_datasets(config, load_splits(config), model.config.mean, model.config.std)
    loader = epoch_loader(val_set, list(range(len(val_set))), 4, 0, 0)
    device = torch.device("cpu")
    model = model.to(memory_format=memory_format(device))
    engine = Engine(model, make_loss(config.loss), device, None, memory_format(device), DistributedContext())
    return validate(engine, loader)


@pytest.mark.slow
@pytest.mark.parametrize("split_flags, val_images", [
    ([], 12),  # the toy test list: 6 images per rank
    (["--val-fraction", "0.25"], 3),  # 2 images on rank 0, 1 on rank 1: each image still counted once
    (["--ema-decay", "0.5"], 12),  # each rank averages its bare model (DDP keeps the ranks' weights equal)
])
def test_two_process_gloo_run_completes_and_reduces_metrics_over_both_ranks(toy_data, tmp_path, split_flags,
                                                                           val_images):
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "petseg", "train", "--model", "unet_diy", "--width", "8", "--image-size", "64",
               "--batch-size", "4", "--epochs", "2", "--device", "cpu", "--no-progress",
               "--data", str(toy_data), "--out", str(out), *split_flags]
    result = subprocess.run(command, capture_output=True, text=True, timeout=400,
                            env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    # Only rank 0 logs and writes: one summary line per epoch, one set of files.
    assert result.stdout.count("epoch 1/2 ") == 1 and result.stdout.count("epoch 2/2 ") == 1
    assert "2 process(es)" in result.stdout and f"validating on {val_images} " in result.stdout
    assert {"config.json", "history.csv", "history.json", "curves.png", "best.safetensors", "last.pt",
            "summary.json"} <= {path.name for path in out.iterdir()}
    assert json.loads((out / "summary.json").read_text())["processes"] == 2
    assert ("ema" in load_checkpoint(out / "last.pt")) == ("--ema-decay" in split_flags)

    history = json.loads((out / "history.json").read_text())
    loss, metrics = _validate_single_process(out, toy_data)
    # The ranks' confusion matrices summed = the whole validation split seen once.
    for name in ("pixel_accuracy", "miou", "fg_iou", "fg_iou_per_image"):
        assert history[-1][f"val_{name}"] == pytest.approx(metrics[name], abs=1e-6), name
    # Batch means of the loss depend on how images are batched (2 per rank there, 4 here).
    assert history[-1]["val_loss"] == pytest.approx(loss, rel=1e-2)


@pytest.mark.slow
def test_a_write_that_fails_on_rank_0_stops_every_rank_at_once(toy_data, tmp_path):
    """Only rank 0 writes run files; when it cannot (here a file-size limit, as a full disk
    would), the other rank stops with it instead of waiting at the next collective until
    gloo's timeout, and each says why in one line."""
    import os
    import resource

    def train(out, epochs: int, **options):
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                   "-m", "petseg", "train", "--model", "unet_diy", "--width", "8", "--image-size", "64",
                   "--batch-size", "4", "--epochs", str(epochs), "--device", "cpu", "--no-progress",
                   "--data", str(toy_data), "--out", str(out)]
        environment = {**os.environ, "OMP_NUM_THREADS": "1", "PETSEG_CACHE_DIR": str(tmp_path / "cache")}
        return subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment, **options)

    # A first run fills the decoded-sample cache, so that under the limit only run files are written.
    assert train(tmp_path / "warm", 1).returncode == 0

    def small_files_only() -> None:  # config.json fits; the first model file does not
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    out = tmp_path / "ddp"
    result = train(out, 2, preexec_fn=small_files_only)
    assert result.returncode != 0
    ranks = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert any("best.safetensors: cannot write it (I/O error: File too large" in line for line in ranks), result.stderr[-3000:]
    assert any("rank 0 could not save epoch 1" in line for line in ranks), result.stderr[-3000:]
    assert "[rank" not in result.stderr, "a rank printed a traceback"
    assert (out / "config.json").is_file() and not (out / "best.safetensors").exists()


# Run through torchrun in place of `-m petseg`: rank 1's loss turns NaN at its second step.
NAN_ON_RANK_1 = """
import os, sys
import torch
import petseg.train.losses as losses

original = losses.make_loss


def make_loss(name):
    loss = original(name)
    if os.environ.get("RANK") != "1":
        return loss
    steps = []

    class NanAtStep2(torch.nn.Module):
        def forward(self, logits, masks):
            steps.append(1)
            value = loss(logits, masks)
            return value * float("nan") if len(steps) == 2 else value

    return NanAtStep2()


losses.make_loss = make_loss
from petseg.cli import main

sys.argv = ["petseg", *sys.argv[1:]]
main()
"""


@pytest.mark.slow
def test_a_loss_that_diverges_on_one_rank_stops_every_rank_at_that_step(toy_data, tmp_path):
    """Rank 1 alone raised; rank 0 went on into backward()'s all-reduce and was killed there by
    torchrun, with no line of its own. Now every rank learns of it at the same step."""
    import os

    script = tmp_path / "nan_on_rank_1.py"
    script.write_text(NAN_ON_RANK_1)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
               "train", "--model", "unet_diy", "--width", "8", "--image-size", "64", "--batch-size", "4",
               "--epochs", "1", "--device", "cpu", "--no-progress", "--data", str(toy_data), "--out", str(tmp_path / "ddp")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: training diverged at step 2 ")]
    assert len(lines) == 2, result.stderr[-3000:]  # one from each rank
    assert any("(train loss nan)" in line for line in lines)
    assert any("(another process's train loss was not finite)" in line for line in lines)
    assert "[rank" not in result.stderr, "a rank printed a traceback"
