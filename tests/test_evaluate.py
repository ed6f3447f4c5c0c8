"""`evaluate()` and `petseg evaluate`: confusion matrices checked by hand, both resolutions, files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from petseg.errors import PetsegError
from tests.test_inference_toy_model import one_thread, toy_model_file  # noqa: F401

METRIC_KEYS = {
    "pixel_accuracy", "iou_pet", "iou_background", "iou_border", "miou", "fg_iou", "fg_iou_per_image",
    "dice_pet", "dice_background", "dice_border", "confusion_matrix",
}


class HalfAndHalf:
    """A stand-in model: pet on the left half of its input square, background on the right."""

    name = "stub"

    def __init__(self, image_size: int = 32):
        from petseg.models.config import ModelConfig

        self.config = ModelConfig("stub", image_size=image_size)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        size = self.config.image_size
        probabilities = np.zeros((len(batch), 3, size, size), np.float32)
        probabilities[:, 0, :, : size // 2] = 1.0
        probabilities[:, 1, :, size // 2 :] = 1.0
        return probabilities


def test_confusion_matrices_match_hand_counts(toy_data):
    from petseg.data.layouts import load_sample, load_samples
    from petseg.data.letterbox import Letterbox
    from petseg.evaluate import evaluate
    from petseg.inference import Segmenter

    samples = load_samples(toy_data, "test")
    result = evaluate(Segmenter(HalfAndHalf(32)), samples, batch_size=5)

    model_counts = np.zeros((3, 3), np.int64)
    for sample in samples:
        _, labels = load_sample(sample)
        boxed = Letterbox.fit(*labels.shape, 32).apply_mask(labels)
        for columns, predicted in ((slice(0, 16), 0), (slice(16, 32), 1)):
            half = boxed[:, columns]
            for true_class in range(3):
                model_counts[true_class, predicted] += int((half == true_class).sum())
    model = result["resolutions"]["model"]
    np.testing.assert_array_equal(model["confusion_matrix"], model_counts)
    assert model["pixel_accuracy"] == pytest.approx(np.trace(model_counts) / model_counts.sum())
    assert result["num_images"] == len(samples) and result["skipped"] == []
    assert set(model) == METRIC_KEYS and set(result["resolutions"]["original"]) == METRIC_KEYS


def test_original_resolution_counts_every_photo_pixel_once(toy_data):
    """At original size each photo pixel counts once, in its true class's row."""
    from petseg.data.layouts import load_sample, load_samples
    from petseg.evaluate import evaluate
    from petseg.inference import Segmenter

    samples = load_samples(toy_data, "test")
    matrix = np.array(evaluate(Segmenter(HalfAndHalf(32)), samples)["resolutions"]["original"]["confusion_matrix"])
    per_class = sum(np.bincount(load_sample(sample)[1].ravel(), minlength=3) for sample in samples)
    np.testing.assert_array_equal(matrix.sum(axis=1), per_class)
    assert matrix[:, 2].sum() == 0  # the stub never predicts border


def test_trained_model_scores_well_and_keeps_examples(toy_data, toy_model_file):
    from petseg.data.layouts import load_samples
    from petseg.evaluate import evaluate
    from petseg.models import load_model

    result = evaluate(load_model(toy_model_file), load_samples(toy_data, "test"), examples=3)
    for resolution in ("model", "original"):
        assert result["resolutions"][resolution]["fg_iou"] > 0.8
    assert len(result["examples"]) == 3
    example = result["examples"][0]
    assert example.predicted.shape == example.labels.shape == example.alpha.shape == example.photo.shape[:2]


def test_evaluate_command_prints_tables_json_and_writes_files(toy_data, toy_model_file, tmp_path):
    from petseg.cli import app

    data = tmp_path / "pets"
    shutil.copytree(toy_data, data)
    first_test = (data / "annotations" / "test.txt").read_text().split()[0]
    (data / "images" / f"{first_test}.jpg").write_bytes(b"broken")  # skipped and listed; the others are scored
    out = tmp_path / "evaluation"
    runner = CliRunner()
    args = ["evaluate", str(toy_model_file.parent), "--data", str(data), "--out", str(out), "--examples", "2"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 1, result.output  # as cutout: some inputs failed, the rest was written
    tested = len((data / "annotations" / "test.txt").read_text().splitlines())
    assert result.stderr.splitlines()[-1] == f"error: 1 of {tested} sample(s) skipped; the figures leave them out"
    report = json.loads(result.stdout)
    assert report["split"] == "test" and len(report["skipped"]) == 1 and first_test in report["skipped"][0]
    assert set(report["resolutions"]) == {"model", "original"}
    assert json.loads((out / "metrics.json").read_text())["resolutions"] == report["resolutions"]
    grid = Image.open(out / "predictions.png")
    assert grid.format == "PNG" and grid.height > 200

    again = runner.invoke(app, args)
    assert isinstance(again.exception, PetsegError) and "--force" in str(again.exception)
    text = runner.invoke(app, [*args, "--force"])
    assert text.exit_code == 1
    for heading in ("fg_iou", "per class (original resolution)", "confusion matrix (model;"):
        assert heading in text.stdout


def test_evaluate_out_must_be_a_writable_folder(toy_data, toy_model_file, tmp_path, monkeypatch):
    from petseg import atomic
    from petseg.cli import app

    runner = CliRunner()
    args = ["evaluate", str(toy_model_file), "--data", str(toy_data), "--examples", "1", "--out"]
    a_file = tmp_path / "report.txt"
    a_file.write_text("keep me")
    result = runner.invoke(app, [*args, str(a_file)])
    assert isinstance(result.exception, PetsegError) and "is a file, not a folder" in str(result.exception)
    assert a_file.read_text() == "keep me"

    def disk_full(path, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic, "write_bytes_atomic", disk_full)
    result = runner.invoke(app, [*args, str(tmp_path / "evaluation")])
    assert isinstance(result.exception, PetsegError) and "No space left on device" in str(result.exception)


class FixedNoise:
    """A stand-in model answering the same noisy probabilities for every photo."""

    def __init__(self, image_size: int):
        from petseg.models.config import ModelConfig

        self.config = ModelConfig("stub", image_size=image_size)
        logits = np.random.default_rng(0).normal(size=(3, image_size, image_size))
        self.probabilities = (np.exp(logits) / np.exp(logits).sum(0)).astype(np.float32)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return np.repeat(self.probabilities[None], len(batch), axis=0)


def test_original_resolution_uses_the_cutout_upsampling(toy_data):
    """A model larger than the photos: its maps shrink, where Pillow (cutouts) and torch differ."""
    from petseg.data.layouts import load_sample, load_samples
    from petseg.evaluate import evaluate
    from petseg.inference import Segmenter

    segmenter = Segmenter(FixedNoise(160))  # the toy photos are 96 px
    samples = load_samples(toy_data, "test")
    result = evaluate(segmenter, samples, examples=len(samples))
    for sample, example in zip(samples, result["examples"]):
        [prediction] = segmenter.predict_batch([load_sample(sample)[0]])
        np.testing.assert_array_equal(example.predicted, prediction.labels())


def test_alpha_figures_score_each_cutout_alpha_against_the_trimap(toy_data):
    """hard alpha of the half-and-half stub is its own label map: the figures follow from hand counts."""
    from petseg.data.layouts import load_sample, load_samples
    from petseg.evaluate import evaluate
    from petseg.inference import Segmenter
    from petseg.inference.compose import upsample_labels
    from petseg.data.letterbox import Letterbox

    samples = load_samples(toy_data, "test")[:4]
    result = evaluate(Segmenter(HalfAndHalf(32)), samples, alphas=("hard", "matting"))
    assert set(result["alpha"]) == {"hard", "matting"}
    pet_total = pet_kept = background_total = background_cleared = 0
    for sample in samples:
        _, labels = load_sample(sample)
        box = Letterbox.fit(*labels.shape, 32)
        stub = HalfAndHalf(32)(np.zeros((1, 3, 32, 32), np.float32))[0]
        crop = stub[:, box.top : box.top + box.height, box.left : box.left + box.width]
        kept = upsample_labels(crop, *labels.shape) == 0
        pet_total += int((labels == 0).sum())
        pet_kept += int(((labels == 0) & kept).sum())
        background_total += int((labels == 1).sum())
        background_cleared += int(((labels == 1) & ~kept).sum())
    hard = result["alpha"]["hard"]
    assert hard["pet_opaque"] == pytest.approx(pet_kept / pet_total)
    assert hard["bg_clear"] == pytest.approx(background_cleared / background_total)
    errors = (pet_total - pet_kept) + (background_total - background_cleared)
    assert hard["alpha_mae"] == pytest.approx(errors / (pet_total + background_total))
    assert hard["semi_known"] == 0.0
    for value in result["alpha"]["matting"].values():
        assert 0.0 <= value <= 1.0


def test_evaluate_command_scores_the_alphas_it_is_given(toy_data, toy_model_file):
    from petseg.cli import app

    args = ["evaluate", str(toy_model_file), "--data", str(toy_data), "--json"]
    result = CliRunner().invoke(app, [*args, "--alpha", "soft", "--alpha", "hard"])
    assert result.exit_code == 0, result.output
    assert list(json.loads(result.stdout)["alpha"]) == ["soft", "hard"]
    wrong = CliRunner().invoke(app, [*args, "--alpha", "blurry"])
    assert isinstance(wrong.exception, PetsegError) and "--alpha: 'blurry'" in str(wrong.exception)


def test_evaluate_reads_a_masks_folder_with_mask_values(toy_data, toy_model_file, tmp_path):
    """images/ + masks/ with no classes.json: --mask-values maps the values, as for train and data check."""
    from petseg.cli import app

    root = tmp_path / "mine"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for photo in sorted((toy_data / "images").glob("*.jpg"))[:3]:
        shutil.copy(photo, root / "images" / photo.name)
        trimap = np.asarray(Image.open(toy_data / "annotations" / "trimaps" / f"{photo.stem}.png"))
        Image.fromarray(np.where(trimap == 1, 255, 0).astype(np.uint8)).save(root / "masks" / f"{photo.stem}.png")
    runner = CliRunner()
    refused = runner.invoke(app, ["evaluate", str(toy_model_file), "--data", str(root), "--split", "all"])
    assert isinstance(refused.exception, PetsegError) and "needs a class mapping" in str(refused.exception)
    result = runner.invoke(app, ["evaluate", str(toy_model_file), "--data", str(root), "--split", "all", "--json",
                                 "--mask-values", "0=background,255=pet", "--alpha", "hard"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["num_images"] == 3


def _run_main(monkeypatch, capsys, *args) -> tuple[int, str]:
    """The real entry point in-process: (exit status, stderr)."""
    import sys

    from petseg.cli import main

    monkeypatch.setattr(sys, "argv", ["petseg", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr().err


def _loading_fails(monkeypatch):
    from petseg.inference import Segmenter

    def load(*args, **kwargs):
        raise AssertionError("the options must be checked before the model loads")

    monkeypatch.setattr(Segmenter, "load", load)


def test_examples_are_bounded_by_what_the_grid_can_show(toy_data, toy_model_file, monkeypatch, capsys):
    from petseg.evaluate import MAX_EXAMPLES, evaluate

    assert MAX_EXAMPLES == 24
    _loading_fails(monkeypatch)
    status, errors = _run_main(monkeypatch, capsys, "evaluate", toy_model_file, "--data", toy_data, "--examples", 300)
    assert (status, errors) == (2, "error: --examples must be a whole number in 1..24, got 300\n")
    with pytest.raises(PetsegError) as raised:
        evaluate(HalfAndHalf(), [], examples=25)
    assert str(raised.value) == "examples must be a whole number in 0..24, got 25"


def test_an_out_folder_that_cannot_be_written_is_refused_before_the_model_loads(toy_data, toy_model_file, tmp_path,
                                                                                 monkeypatch, capsys):
    _loading_fails(monkeypatch)
    a_file = tmp_path / "photo.jpg"
    a_file.write_text("keep me")
    status, errors = _run_main(monkeypatch, capsys, "evaluate", toy_model_file, "--data", toy_data,
                               "--out", a_file / "sub")
    assert (status, errors) == (2, f"error: --out: {a_file}: exists and is not a folder; the outputs need a folder\n")
    if Path("/proc/self").is_dir():  # a place no file can be created in, even by root
        status, errors = _run_main(monkeypatch, capsys, "evaluate", toy_model_file, "--data", toy_data,
                                   "--out", "/proc/petseg-evaluation")
        assert (status, errors) == (
            2, "error: --out: /proc/petseg-evaluation: cannot write there (No such file or directory)\n")


def test_an_evaluation_removes_the_temporaries_a_killed_one_left(toy_data, toy_model_file, tmp_path):
    from petseg.cli import app
    from tests.test_atomic import dead_pid

    out = tmp_path / "evaluation"
    out.mkdir()
    stale = out / f".predictions.png.petseg-tmp-{dead_pid()}-deadbeef"
    stale.write_bytes(b"half a figure")
    result = CliRunner().invoke(app, ["evaluate", str(toy_model_file), "--data", str(toy_data), "--out", str(out),
                                      "--examples", "1"])
    assert result.exit_code == 0, result.output
    assert sorted(path.name for path in out.iterdir()) == ["metrics.json", "predictions.png"]


def test_each_figure_comes_from_the_prediction_its_output_is_made_from(toy_data, toy_model_file):
    """By default only matting averages in the mirrored photo: its figures are those of a
    flip_tta=True segmenter, the labels' and hard alpha's those of a flip_tta=False one."""
    from petseg.data.layouts import load_samples
    from petseg.evaluate import evaluate
    from petseg.inference import Segmenter

    samples = load_samples(toy_data, "test")
    results = {flip: evaluate(Segmenter.load(toy_model_file, flip_tta=flip), samples, alphas=("matting", "hard"))
               for flip in (None, True, False)}
    assert results[None]["flip_tta"] == {"matting": True, "hard": False, "labels": False}
    assert results[True]["flip_tta"] == {"matting": True, "hard": True, "labels": True}
    assert results[None]["alpha"]["matting"] == pytest.approx(results[True]["alpha"]["matting"], abs=1e-9)
    assert results[None]["alpha"]["hard"] == pytest.approx(results[False]["alpha"]["hard"], abs=1e-9)
    for key in ("pixel_accuracy", "fg_iou"):
        plain, flipped = (results[flip]["resolutions"]["original"][key] for flip in (False, True))
        assert results[None]["resolutions"]["original"][key] == pytest.approx(plain, abs=1e-12)
        assert plain != flipped  # the mirror changes the toy model's answer: the check above can fail


@pytest.mark.parametrize("flag, value", [("--alpha", "x" * 5000), ("--split", "x" * 5000), ("--mask-values", "0=" + "x" * 5000)])
def test_evaluate_clips_what_it_echoes(toy_data, flag, value):
    from petseg.cli import app

    result = CliRunner().invoke(app, ["evaluate", "--data", str(toy_data), flag, value])  # refused before a model loads
    assert isinstance(result.exception, PetsegError)
    assert "'" + "x" * 100 + "…'" in str(result.exception) and len(str(result.exception)) < 300
