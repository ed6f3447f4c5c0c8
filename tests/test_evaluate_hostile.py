"""`evaluate()` and `petseg evaluate` given the wrong things: one-line errors, nothing half-written.

The Python API raised AttributeError, TypeError or ModuleNotFoundError for a model path, None,
a text of alphas or a generator of samples; the command replaced a dangling symbolic link
without --force, and with --force wrote metrics.json before finding a folder where
predictions.png goes.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from petseg.errors import PetsegError
from tests.test_evaluate import HalfAndHalf
from tests.test_inference_toy_model import one_thread, toy_model_file  # noqa: F401


@pytest.fixture(scope="module")
def few_samples(toy_data):
    from petseg.data.layouts import load_samples

    return load_samples(toy_data, "test")[:2]


@pytest.fixture
def stub():
    from petseg.inference import Segmenter

    return Segmenter(HalfAndHalf(32))


def _loading_fails(monkeypatch):
    from petseg.inference import Segmenter

    def load(*args, **kwargs):
        raise AssertionError("the arguments must be checked before the model loads")

    monkeypatch.setattr(Segmenter, "load", load)


def test_a_model_path_is_loaded_as_segmenter_load_would(toy_model_file, few_samples):
    from petseg.evaluate import evaluate
    from petseg.inference import Segmenter

    expected = evaluate(Segmenter.load(toy_model_file), few_samples, alphas=["hard"])
    for model in (str(toy_model_file), toy_model_file, toy_model_file.parent):  # a file, a Path, a run folder
        result = evaluate(model, few_samples, alphas=["hard"])
        assert result["resolutions"] == expected["resolutions"] and result["alpha"] == expected["alpha"]


def test_a_model_path_that_is_not_a_model_is_one_line(tmp_path, few_samples):
    from petseg.evaluate import evaluate

    with pytest.raises(PetsegError, match=r"model not found"):
        evaluate(str(tmp_path / "missing.onnx"), few_samples)


@pytest.mark.parametrize("model, got", [(None, "NoneType"), (42, "int"), (b"model.onnx", "bytes"),
                                        (HalfAndHalf(32), "HalfAndHalf")])
def test_a_model_of_the_wrong_kind_is_one_line_naming_the_argument(model, got, few_samples):
    from petseg.evaluate import evaluate

    with pytest.raises(PetsegError) as raised:
        evaluate(model, few_samples)
    message = str(raised.value)
    assert message.startswith(f"model_or_segmenter must be a Segmenter, a model path or a petseg model, got {got}")
    assert "\n" not in message
    if model is None:
        assert "Segmenter.load()" in message  # how to ask for the bundled model


def test_a_torch_module_without_a_petseg_config_is_refused(few_samples):
    import torch

    from petseg.evaluate import evaluate

    with pytest.raises(PetsegError, match=r"^model_or_segmenter .*Conv2d.* has no petseg config"):
        evaluate(torch.nn.Conv2d(3, 3, 1), few_samples)


@pytest.mark.parametrize("alphas, expected", [
    (None, "alphas must be a list or tuple of matting, hard, soft, got NoneType"),
    ("hard", "alphas must be a list or tuple of matting, hard, soft, got str (for one, pass ['hard'])"),
    (["bogus"], "alphas holds 'bogus', which is not one of matting, hard, soft"),
    (["hard", 3], "alphas holds 3, which is not one of matting, hard, soft"),
])
def test_alphas_of_the_wrong_kind_are_one_line(alphas, expected, few_samples, monkeypatch):
    from petseg.evaluate import evaluate

    _loading_fails(monkeypatch)
    with pytest.raises(PetsegError) as raised:
        evaluate("model.onnx", few_samples, alphas=alphas)
    assert str(raised.value).startswith(expected)


def test_samples_of_the_wrong_kind_are_one_line_naming_the_argument(stub, few_samples, monkeypatch):
    from petseg.evaluate import evaluate

    _loading_fails(monkeypatch)
    cases = [
        ((sample for sample in few_samples), r"got generator \(pass list\(samples\)\)"),
        ("ds1", r"got str \(for a dataset folder, pass load_samples\(folder, split\)\)"),
        (Path("ds1"), r"got PosixPath \(for a dataset folder|got WindowsPath \(for a dataset folder"),
        ([str(few_samples[0].image_path)], r"item 0 is str"),
        ([few_samples[0], None], r"item 1 is NoneType"),
        ([], r"is empty"),
    ]
    for samples, expected in cases:
        with pytest.raises(PetsegError) as raised:
            evaluate("model.onnx", samples)
        message = str(raised.value)
        assert message.startswith("samples ") and re.search(expected, message), message
    result = evaluate(stub, tuple(few_samples), alphas=("hard", "hard"))  # tuples are fine, a kind once
    assert result["num_images"] == len(few_samples) and list(result["alpha"]) == ["hard"]


# ---- the command: outputs checked before anything is done -----------------------------------


def _args(toy_model_file, toy_data, out, *extra):
    return ["evaluate", str(toy_model_file), "--data", str(toy_data), "--out", str(out), "--examples", "1",
            "--alpha", "hard", *extra]


def test_a_dangling_link_in_out_is_refused_without_force_and_replaced_with_it(toy_data, toy_model_file, tmp_path,
                                                                               monkeypatch):
    """exists() calls a dangling link absent: it was silently replaced, as cutout, export and compare refuse."""
    from petseg.cli import app

    out = tmp_path / "evaluation"
    out.mkdir()
    names = ("metrics.json", "predictions.png")
    with monkeypatch.context() as patch:
        _loading_fails(patch)
        for name in names:
            (out / name).symlink_to(tmp_path / f"nowhere-{name}")
            result = CliRunner().invoke(app, _args(toy_model_file, toy_data, out))
            assert isinstance(result.exception, PetsegError), result.output
            assert str(out / name) in str(result.exception) and "--force" in str(result.exception)
            assert os.readlink(out / name) == str(tmp_path / f"nowhere-{name}")
            assert sorted(os.listdir(out)) == sorted(names[: names.index(name) + 1])
    result = CliRunner().invoke(app, _args(toy_model_file, toy_data, out, "--force"))
    assert result.exit_code == 0, result.output
    for name in names:
        assert not (out / name).is_symlink() and (out / name).stat().st_size > 0
        assert not (tmp_path / f"nowhere-{name}").exists()


@pytest.mark.parametrize("name", ["metrics.json", "predictions.png"])
@pytest.mark.parametrize("force", [False, True])
def test_a_folder_where_an_output_goes_is_refused_before_anything_is_written(name, force, toy_data, toy_model_file,
                                                                            tmp_path, monkeypatch):
    from petseg.cli import app

    _loading_fails(monkeypatch)
    out = tmp_path / "evaluation"
    (out / name).mkdir(parents=True)
    (out / name / "keep.txt").write_text("keep me")
    result = CliRunner().invoke(app, _args(toy_model_file, toy_data, out, *(["--force"] if force else [])))
    assert isinstance(result.exception, PetsegError), result.output
    assert str(result.exception) == f"--out: {out / name} is a folder, where the evaluation writes a file"
    assert os.listdir(out) == [name] and os.listdir(out / name) == ["keep.txt"]


def test_a_grid_that_cannot_be_written_leaves_no_new_metrics_json(toy_data, toy_model_file, tmp_path, monkeypatch):
    """The grid is drawn before anything is written; a write that fails takes back what this run wrote."""
    from petseg import atomic
    from petseg.cli import app

    real_write = atomic.write_bytes_atomic

    def grid_disk_full(path, data):
        if Path(path).name == "predictions.png":
            raise OSError(28, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(atomic, "write_bytes_atomic", grid_disk_full)
    out = tmp_path / "evaluation"
    result = CliRunner().invoke(app, _args(toy_model_file, toy_data, out))
    assert isinstance(result.exception, PetsegError), result.output
    assert str(result.exception) == f"--out: cannot write {out / 'predictions.png'} (No space left on device)"
    assert not out.exists() or os.listdir(out) == []
