"""`petseg evaluate` says when the bundled model is scored on photos it trained on."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from petseg.evaluate import fit_check_warning
from petseg.models.files import BUNDLED_MODEL_NAME, WEIGHTS_FOLDER


def test_the_bundled_model_on_its_own_training_photos_is_a_fit_check():
    warning = fit_check_warning(None, ["Abyssinian_100", "Bengal_1", "great_pyrenees_1"])
    assert warning == ("2 of 3 photos are among the bundled model's training photos: "
                       "the figures are a fit check, not a score")
    assert fit_check_warning(WEIGHTS_FOLDER / BUNDLED_MODEL_NAME, ["Bengal_1"]) is not None


def test_other_photos_or_other_models_get_no_warning(tmp_path):
    assert fit_check_warning(None, ["great_pyrenees_1", "Roundcat_1"]) is None
    assert fit_check_warning(tmp_path / "my-model.safetensors", ["Abyssinian_100"]) is None


@pytest.mark.shared_data
@pytest.mark.slow  # runs the bundled model on two photos
def test_evaluate_prints_the_warning_once(shared_sample, tmp_path):
    folder = tmp_path / "pets"
    (folder / "annotations" / "trimaps").mkdir(parents=True)
    (folder / "images").mkdir()
    for name in ("Abyssinian_100", "Bengal_1"):
        shutil.copy(shared_sample / "images" / f"{name}.jpg", folder / "images")
        shutil.copy(shared_sample / "annotations" / "trimaps" / f"{name}.png", folder / "annotations" / "trimaps")
    result = subprocess.run([sys.executable, "-m", "petseg", "evaluate", "--data", str(folder), "--split", "all"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: 2 of 2 photos are among the bundled model's training photos: "
                        "the figures are a fit check, not a score"]
