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
