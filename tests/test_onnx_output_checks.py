"""Every ONNX run's output is checked, not only the load check's blank batch.

A graph can answer the load check's batch of two blank images at 64 px rightly and a real
batch (more images, the model's full size) with another shape: numpy's broadcast and index
errors followed, or, for a smaller map, wrong cutouts written without a word.
"""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from petseg.errors import PetsegError
from tests.test_model_files import VALID, constant, onnx_file, tensor

# (file name, what it does, config changes, nodes after "soft" (the softmax) giving "probabilities",
#  the size the model runs at, the output shape it gives for a batch of 3 at that size).
OUTPUTS = {
    # The first two images only: the load check's batch of two passes.
    "batch2": ({}, lambda: [constant("starts", np.array([0], np.int64)), constant("ends", np.array([2], np.int64)),
                            constant("axes", np.array([0], np.int64)),
                            slice_node()], 32, (2, 3, 32, 32)),
    # At most 64x64: the load check's 64 px blank images pass, the model's 96 px do not.
    "slice64": ({"image_size": 96}, lambda: [constant("starts", np.array([0, 0], np.int64)),
                                             constant("ends", np.array([64, 64], np.int64)),
                                             constant("axes", np.array([2, 3], np.int64)),
                                             slice_node()], 96, (3, 3, 64, 64)),
}  # fmt: skip


def slice_node():
    from onnx import helper

    return helper.make_node("Slice", ["soft", "starts", "ends", "axes"], ["probabilities"])


def model_file(path, changes: dict, tail_nodes: list):
    """Softmax over the image's three channels (probabilities of a sort), then `tail_nodes`."""
    from onnx import helper

    nodes = [helper.make_node("Softmax", ["images"], ["soft" if tail_nodes else "probabilities"], axis=1), *tail_nodes]
    return onnx_file(path, {**VALID, **changes}, nodes=nodes, inputs=[tensor("images", ["batch", 3, "height", "width"])],
                     outputs=[tensor("probabilities", ["batch", 3, "height", "width"])])  # fmt: skip


def photos(count: int = 3) -> list[np.ndarray]:
    generator = np.random.default_rng(0)
    return [generator.integers(0, 256, (30 + 4 * index, 40, 3), dtype=np.uint8) for index in range(count)]


@pytest.mark.parametrize("name", OUTPUTS)
def test_a_wrong_output_shape_on_real_photos_is_one_line_from_the_python_api(tmp_path, name):
    from petseg.inference import Segmenter

    changes, tail, size, shape = OUTPUTS[name]
    good = Segmenter.load(model_file(tmp_path / "good.onnx", changes, []))
    assert [probabilities.shape for probabilities in good.predict(photos())] == [(3, 30, 40), (3, 34, 40), (3, 38, 40)]

    path = model_file(tmp_path / f"{name}.onnx", changes, tail())
    segmenter = Segmenter.load(path)  # the load check's blank batch passes
    expected = (f"{path}: the ONNX model answers a batch of 3 {size}x{size} images with an output of shape "
                f"{shape}, not {(3, 3, size, size)}")
    with pytest.raises(PetsegError, match=f"^{re.escape(expected)}$"):
        segmenter.predict(photos())
    with pytest.raises(PetsegError, match=f"^{re.escape(str(path))}: the ONNX model answers a batch of 4 "):
        segmenter.predict_batch(photos(2), flip=True)  # two photos and their mirror images


@pytest.mark.parametrize("name", OUTPUTS)
def test_the_cutout_command_refuses_a_wrong_output_shape_in_one_line_and_writes_nothing(tmp_path, name):
    changes, tail, size, shape = OUTPUTS[name]
    folder = tmp_path / "photos"
    folder.mkdir()
    for index, photo in enumerate(photos()):
        Image.fromarray(photo).save(folder / f"p{index}.png")

    def cutout(model, out, *options):
        return subprocess.run([sys.executable, "-m", "petseg", "cutout", str(folder), "--model", str(model),
                               "--out", str(out), *options], capture_output=True, text=True, timeout=180)  # fmt: skip

    good = cutout(model_file(tmp_path / "good.onnx", changes, []), tmp_path / "good")
    assert good.returncode == 0, good.stderr
    assert sorted(path.name for path in (tmp_path / "good").glob("*.png")) == ["p0.png", "p1.png", "p2.png"]

    path = model_file(tmp_path / f"{name}.onnx", changes, tail())
    for options in ((), ("--alpha", "hard")):
        result = cutout(path, tmp_path / "out", *options)
        assert result.returncode == 2, result.stderr
        [line] = result.stderr.splitlines()
        images = 3 if options else 6  # matting also runs the mirror images
        batch_shape = (min(images, 2), *shape[1:]) if name == "batch2" else (images, *shape[1:])
        assert line == (f"error: {path}: the ONNX model answers a batch of {images} {size}x{size} images with an "
                        f"output of shape {batch_shape}, not {(images, 3, size, size)}"), options
        assert not list(tmp_path.glob("out/*.png")), "no cutout is written from a wrong output"


def test_classes_that_cannot_cut_out_name_the_model_file(tmp_path):
    from onnx import helper

    from petseg.inference import Segmenter

    def first_channels(count: int):  # softmax over the image's first `count` channels
        return [constant("starts", np.array([0], np.int64)), constant("ends", np.array([count], np.int64)),
                constant("axes", np.array([1], np.int64)),
                helper.make_node("Slice", ["images", "starts", "ends", "axes"], ["some"]),
                helper.make_node("Softmax", ["some"], ["probabilities"], axis=1)]  # fmt: skip

    image = tensor("images", ["batch", 3, "height", "width"])
    cases = [("one", {"num_classes": 1, "labels": ["pet"]}, "a model with 1 class cannot cut out"),
             ("catdog", {"num_classes": 2, "labels": ["cat", "dog"]}, "the model's classes (cat, dog) name no 'pet'")]
    for name, changes, words in cases:
        path = onnx_file(tmp_path / f"{name}.onnx", {**VALID, **changes}, nodes=first_channels(changes["num_classes"]),
                         inputs=[image], outputs=[tensor("probabilities", ["batch", changes["num_classes"], "height", "width"])])  # fmt: skip
        with pytest.raises(PetsegError, match=f"^{re.escape(f'{path}: {words}')}"):
            Segmenter.load(path)


def test_the_server_answers_a_model_that_fails_on_a_photo_with_500_naming_it(tmp_path):
    """A broken served model is the server's fault: 500, not the 422 that a wrong option gets."""
    import io

    from fastapi.testclient import TestClient

    from petseg.server import create_app

    changes, tail, size, shape = OUTPUTS["slice64"]
    path = model_file(tmp_path / "slice64.onnx", changes, tail())
    buffer = io.BytesIO()
    Image.fromarray(photos(1)[0]).save(buffer, format="PNG")
    with TestClient(create_app(path)) as client:
        response = client.post("/api/cutout", files={"file": ("p.png", buffer.getvalue(), "image/png")})
    assert response.status_code == 500
    assert response.json()["detail"].startswith(f"{path}: the ONNX model answers a batch of 1 96x96 image with an output of shape (1, 3, 64, 64)")
