"""ONNX export: parity with PyTorch for every registry model, the command, and the ONNX backend."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from petseg.errors import PetsegError
from tests.test_inference_toy_model import one_thread, toy_model_file, toy_photo  # noqa: F401

# Models whose export + check take over ~10 s on a busy 2-core machine.
SLOW = {"unet_efficientnet_lite0"}


def registry_cases():
    from petseg.models import list_models

    cases = [pytest.param(name, {}, marks=[pytest.mark.slow] if name in SLOW else [], id=name) for name in list_models()]
    cases.append(pytest.param("unet_mobilenetv2", {"decoder": "pix2pix"}, marks=[pytest.mark.slow], id="pix2pix"))
    return cases


@pytest.mark.parametrize("name, options", registry_cases())
def test_onnx_probabilities_match_pytorch(name, options):
    """Dynamic batch and size: the check runs batch 2 at 64 px and batch 1 at an odd 51x69."""
    from petseg.inference.export import PARITY_TOLERANCE, export_onnx, max_probability_difference
    from petseg.models import create_model

    if name == "unet_diy":
        options = {**options, "width": 8}
    model = create_model(name, pretrained=False, image_size=64, **options)
    assert max_probability_difference(model, export_onnx(model)) < PARITY_TOLERANCE


def test_export_command_writes_a_self_describing_model_once(toy_model_file, tmp_path):
    from petseg.cli import app
    from petseg.inference import Segmenter

    target = tmp_path / "toy.onnx"
    runner = CliRunner()
    result = runner.invoke(app, ["export", str(toy_model_file.parent), "--onnx", str(target)])
    assert result.exit_code == 0, result.output
    assert "max probability difference" in result.output
    again = runner.invoke(app, ["export", str(toy_model_file), "--onnx", str(target)])
    assert isinstance(again.exception, PetsegError) and "--force" in str(again.exception)
    assert runner.invoke(app, ["export", str(toy_model_file), "--onnx", str(target), "--force"]).exit_code == 0
    onnx_segmenter = Segmenter.load(target)
    assert onnx_segmenter.backend.name == "onnx"
    assert onnx_segmenter.config == Segmenter.load(toy_model_file).config


def test_onnx_backend_gives_the_torch_cutout(toy_model_file, toy_photo, tmp_path):
    from petseg.inference import Segmenter, remove_background

    photo, _ = toy_photo
    torch_segmenter = Segmenter.load(toy_model_file)
    in_memory = Segmenter.load(toy_model_file, backend="onnx", threads=1)  # exported on the fly
    np.testing.assert_allclose(in_memory.predict(photo), torch_segmenter.predict(photo), atol=1e-4)
    expected = remove_background(photo, segmenter=torch_segmenter)
    assert np.abs(remove_background(photo, segmenter=in_memory).astype(int) - expected).max() <= 1


def test_a_failed_parity_check_writes_nothing(toy_model_file, tmp_path, monkeypatch):
    from petseg.inference import export
    from petseg.models import load_model

    monkeypatch.setattr(export, "max_probability_difference", lambda model, data: 0.5)
    with pytest.raises(PetsegError, match="differs from PyTorch"):
        export.export_and_verify(load_model(toy_model_file), tmp_path / "bad.onnx")
    assert list(tmp_path.iterdir()) == []


def test_a_corrupt_petseg_config_in_an_onnx_file_is_one_line(toy_model_file, tmp_path):
    import onnx

    from petseg.inference.export import export_onnx
    from petseg.inference import Segmenter
    from petseg.models.config import CONFIG_METADATA_KEY
    from petseg.models import load_model

    graph = onnx.load_from_string(export_onnx(load_model(toy_model_file)))
    for broken in ("{not json", "[1, 2]", '{"image_size": 64}'):
        onnx.helper.set_model_props(graph, {CONFIG_METADATA_KEY: broken})
        target = tmp_path / "broken.onnx"
        target.write_bytes(graph.SerializeToString())
        with pytest.raises(PetsegError, match="broken.onnx: unreadable petseg config"):
            Segmenter.load(target)


def test_export_needs_an_onnx_file_name(toy_model_file, tmp_path):
    from petseg.cli import app

    result = CliRunner().invoke(app, ["export", str(toy_model_file), "--onnx", str(tmp_path / "model.safetensors")])
    assert result.exit_code == 2 and "must end in .onnx" in result.output
    assert list(tmp_path.iterdir()) == []
