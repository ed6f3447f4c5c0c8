"""The trained model inside the package: the default everywhere, and it finds real pets."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from petseg.cli import app
from petseg.data.layouts import load_samples
from petseg.inference import Segmenter
from petseg.metrics import SegmentationMetrics
from petseg.models.files import bundled_model_path, read_config


def test_the_bundled_model_is_a_small_float16_file_with_its_config():
    path = bundled_model_path()
    assert path.stat().st_size < 20e6
    config = read_config(path)
    assert config.architecture == "unet_efficientnet_lite0" and config.labels == ("pet", "background", "border")


def test_petseg_models_marks_the_bundled_model():
    result = CliRunner().invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [row["name"] for row in rows if row["bundled"]] == [read_config(bundled_model_path()).architecture]


@pytest.mark.slow
def test_the_default_segmenter_cuts_out_held_out_sample_photos(shared_sample):
    """Photos of the sample's test list, which the bundled model was not trained on."""
    segmenter = Segmenter.load()
    metrics = SegmentationMetrics()
    samples = load_samples(shared_sample, "test")[::20]  # 11 photos across the three breeds
    from petseg.data.layouts import load_sample

    for sample in samples:
        photo, labels = load_sample(sample)
        [probabilities] = segmenter.predict([photo])
        assert probabilities.shape == (3, *photo.shape[:2])
        metrics.update(labels, probabilities.argmax(0))
    result = metrics.compute()
    # The bundled model measured 0.876 fg IoU and 0.916 pixel accuracy on the whole test list;
    # a subset varies, so the bar here only catches a broken or wrong model.
    assert result["fg_iou"] > 0.8 and result["pixel_accuracy"] > 0.85, result
    assert np.isfinite(list(result.values())).all()


def test_cutout_without_model_uses_the_bundled_one(toy_data, tmp_path):
    from PIL import Image

    photo = sorted((toy_data / "images").glob("*.jpg"))[0]
    result = CliRunner().invoke(app, ["cutout", str(photo), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    cutout = Image.open(tmp_path / f"{photo.stem}.png")
    assert cutout.mode == "RGBA" and cutout.size == Image.open(photo).size
