"""benchmarks/quality.py runs on any folder in the official layout and reports every METRICS.md figure."""

import json
import subprocess
import sys
from pathlib import Path

from petseg.data.layouts import load_samples
from tests.test_inference_toy_model import toy_model_file  # noqa: F401  (fixture)

BENCHMARK = Path(__file__).parents[1] / "benchmarks" / "quality.py"
METRICS = ("pixel_accuracy", "iou_pet", "iou_background", "iou_border", "miou", "fg_iou", "fg_iou_per_image",
           "dice_pet", "dice_background", "dice_border")


def test_quality_benchmark_prints_one_json_line_with_every_metric(toy_data, toy_model_file):  # noqa: F811
    completed = subprocess.run([sys.executable, str(BENCHMARK), str(toy_data), "--model", str(toy_model_file),
                                "--split", "test"], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    [line] = completed.stdout.strip().splitlines()
    result = json.loads(line)
    assert result["resolution"] == "original" and result["split"] == "test"
    assert result["num_images"] == len(load_samples(toy_data, "test"))
    for name in METRICS:
        assert 0.0 <= result[name] <= 1.0, name
        assert 0.0 <= result["model_resolution"][name] <= 1.0, name
    # The toy model was trained on this data: it must find the pets.
    assert result["fg_iou"] > 0.7
    assert sum(map(sum, result["confusion_matrix"])) > 0


def test_held_out_split_scores_the_photos_a_run_held_out_with_its_final_weights(toy_data, tmp_path):
    """--split held-out --last: the run's --val-fraction photos, scored with its final weights."""
    from petseg.evaluate import evaluate
    from petseg.inference import Segmenter
    from petseg.models import load_model
    from petseg.train import fit
    from petseg.train.checkpoint import load_final_weights
    from petseg.train.data import load_splits
    from tests.test_train import tiny_config

    config = tiny_config(toy_data, tmp_path / "run", val_fraction=0.25, train_split="all")
    fit(config)
    completed = subprocess.run([sys.executable, str(BENCHMARK), str(toy_data), "--model", str(tmp_path / "run"),
                                "--split", "held-out", "--last", "--alpha", "matting"],
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    splits = load_splits(config)
    assert result["num_images"] == len(splits.val) == round(len(load_samples(toy_data, "all")) * 0.25)
    assert not {sample.name for sample in splits.val} & {sample.name for sample in splits.train}
    assert (result["split"], result["weights"]) == ("held-out", "last")
    model = load_model(tmp_path / "run" / "best.safetensors")
    load_final_weights(model, tmp_path / "run" / "last.pt")
    expected = evaluate(Segmenter.from_model(model), splits.val, alphas=("matting",))
    assert result["pixel_accuracy"] == expected["resolutions"]["original"]["pixel_accuracy"]

    # A run that held nothing out has no such split: one line, no traceback.
    config_file = tmp_path / "run" / "config.json"
    config_file.write_text(config_file.read_text().replace('"val_fraction": 0.25', '"val_fraction": null'))
    refused = subprocess.run([sys.executable, str(BENCHMARK), str(toy_data), "--model", str(tmp_path / "run"),
                              "--split", "held-out"], capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1
    assert refused.stderr.strip() == f"error: {tmp_path / 'run'} held nothing out (it was trained without --val-fraction)"
