"""`petseg summary MODEL --diagram FILE.png|svg`: the U-Net drawn from a real forward pass."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree

import pytest
from PIL import Image

from petseg.errors import PetsegError
from petseg.models import create_model, list_models, save_model
from petseg.models.diagram import draw_unet, trace_unet

SIZE = 64  # small: every registry model is built and run once per format


@pytest.mark.parametrize("name", list_models())
def test_every_registry_model_draws_to_png_and_svg(name, tmp_path):
    model = create_model(name, image_size=SIZE)
    boxes, skips = trace_unet(model, SIZE)
    features = model.encoder(__import__("torch").zeros(1, 3, SIZE, SIZE))
    assert [box.shape for box in boxes if box.title.startswith("encoder")] == [tuple(f.shape[1:]) for f in features]
    assert len(skips) == len(features) - 1  # every skip but the bottleneck joins a decoder block
    assert boxes[-1].shape == (3, SIZE, SIZE)  # the head's logits at the input's size
    with Image.open(draw_unet(model, tmp_path / "unet.png", SIZE)) as image:
        assert image.format == "PNG" and image.width > 300
    svg = ElementTree.parse(draw_unet(model, tmp_path / "unet.svg", SIZE))
    text = " ".join("".join(element.itertext()) for element in svg.iter())
    assert "encoder stage 1" in text and "decoder block 1" in text and "skip" in text
    assert " x ".join(map(str, boxes[1].shape)) in text


def test_cli_draws_a_model_file_and_refuses_to_overwrite(tmp_path):
    from typer.testing import CliRunner

    from petseg.cli import app

    path = save_model(create_model("unet_diy", width=4, image_size=SIZE), tmp_path / "model.safetensors")
    result = CliRunner().invoke(app, ["summary", str(path), "--diagram", str(tmp_path / "unet.svg")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "unet.svg").stat().st_size > 0
    result = CliRunner().invoke(app, ["summary", str(path), "--diagram", str(tmp_path / "unet.svg")])
    assert result.exit_code != 0
    with pytest.raises(PetsegError, match=r"\.png or \.svg"):
        draw_unet(create_model("unet_diy", width=4), tmp_path / "unet.jpg", SIZE)
