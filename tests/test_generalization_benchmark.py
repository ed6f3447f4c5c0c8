"""benchmarks/generalization.py: one fold per breed, each trained without its breed and
scored on all of it, resumable, one JSON line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.generalization import folds, mean_over_folds
from petseg.data.breeds import breed_of
from petseg.data.layouts import load_samples
from petseg.errors import PetsegError
from petseg.train.data import load_splits
from petseg.train.configure import read_config_file

BENCHMARK = Path(__file__).parents[1] / "benchmarks" / "generalization.py"
TINY_BUDGET = ["--model", "unet_diy", "--epochs", "1", "--image-size", "32", "--batch-size", "4"]


def test_each_breed_is_held_out_once_and_trained_on_otherwise():
    assert folds(["Abyssinian", "american_bulldog", "Bengal"]) == [
        ("Abyssinian", ["american_bulldog", "Bengal"]),
        ("american_bulldog", ["Abyssinian", "Bengal"]),
        ("Bengal", ["Abyssinian", "american_bulldog"]),
    ]
    with pytest.raises(PetsegError, match="at least two breeds"):
        folds(["Bengal"])


def test_the_mean_weighs_each_fold_alike_and_keeps_missing_figures_missing():
    scores = [{"pixel_accuracy": 0.5, "fg_iou": 0.2, "fg_iou_per_image": 0.1, "miou": 0.3, "alpha_mae": None},
              {"pixel_accuracy": 1.0, "fg_iou": 0.4, "fg_iou_per_image": 0.3, "miou": 0.5, "alpha_mae": None}]
    mean = mean_over_folds(scores)
    assert mean["pixel_accuracy"] == pytest.approx(0.75) and mean["fg_iou"] == pytest.approx(0.3)
    assert mean["alpha_mae"] is None


def run_benchmark(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCHMARK), *map(str, args)], capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow  # two tiny training runs
def test_two_breed_benchmark_trains_without_the_held_out_breed_and_resumes(toy_data, tmp_path):
    out = tmp_path / "lobo"
    first = run_benchmark(toy_data, "--out", out, *TINY_BUDGET, "--breeds", "roundcat,SPIKYCAT")
    assert first.returncode == 0, first.stderr
    [line] = first.stdout.strip().splitlines()
    result = json.loads(line)
    assert (result["model"], result["epochs"], result["image_size"], result["resolution"]) == (
        "unet_diy", 1, 32, "original")
    assert [fold["held_out"] for fold in result["folds"]] == ["Roundcat", "Spikycat"]
    every = load_samples(toy_data, "all")
    for fold in result["folds"]:
        held_out = fold["held_out"]
        assert fold["num_images"] == sum(breed_of(s.name) == held_out for s in every)
        for name in ("pixel_accuracy", "fg_iou", "fg_iou_per_image", "miou",
                     "alpha_mae", "pet_opaque", "bg_clear", "semi_known"):  # the default (matting) alpha's
            assert 0 <= fold[name] <= 1, name
        # The fold's run saw only the other chosen breed, in training and validation alike.
        config = read_config_file(out / f"holdout-{held_out}" / "config.json")
        splits = load_splits(config)
        other = {"Roundcat", "Spikycat"} - {held_out}
        assert {breed_of(s.name) for s in splits.train + splits.val} == other
    assert result["mean"]["fg_iou"] == pytest.approx(sum(f["fg_iou"] for f in result["folds"]) / 2)

    checkpoint = out / "holdout-Roundcat" / "last.pt"
    written = checkpoint.stat().st_mtime_ns
    again = run_benchmark(toy_data, "--out", out, *TINY_BUDGET, "--breeds", "roundcat,SPIKYCAT", "--resume")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["folds"] == result["folds"]
    assert checkpoint.stat().st_mtime_ns == written, "a finished fold is not trained again"

    # A fold stopped before its first checkpoint (only its config written) starts over.
    stopped = out / "holdout-Spikycat"
    for path in stopped.iterdir():
        if path.name != "config.json":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    restarted = run_benchmark(toy_data, "--out", out, *TINY_BUDGET, "--breeds", "roundcat,SPIKYCAT", "--resume")
    assert restarted.returncode == 0, restarted.stderr
    assert (stopped / "last.pt").is_file() and checkpoint.stat().st_mtime_ns == written

    refused = run_benchmark(toy_data, "--out", out, *TINY_BUDGET, "--breeds", "roundcat,SPIKYCAT")
    assert refused.returncode != 0
    assert refused.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "already holds a run" in refused.stderr


def test_an_unknown_breed_is_one_line(toy_data, tmp_path):
    result = run_benchmark(toy_data, "--out", tmp_path / "lobo", *TINY_BUDGET, "--breeds", "Roundcat,poodle")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: unknown breed 'poodle'; breeds in this dataset: long_dog, lumpy_dog, Roundcat, Spikycat"]
