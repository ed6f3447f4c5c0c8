"""ONNX export: parity with PyTorch for every registry model, the command, and the ONNX backend."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from petseg.errors import PetsegError, command_line_flag
from tests.test_inference_toy_model import one_thread, toy_model_file, toy_photo  # noqa: F401

# Models whose export + check take over ~10 s on a busy 2-core machine.
SLOW = {"unet_efficientnet_lite0", "unet_efficientnet_lite1", "unet_efficientnet_lite2"}


def registry_cases():
    from petseg.models import list_models

    cases = [pytest.param(name, {}, marks=[pytest.mark.slow] if name in SLOW else [], id=name) for name in list_models()]
    cases.append(pytest.param("unet_mobilenetv2", {"decoder": "pix2pix"}, marks=[pytest.mark.slow], id="pix2pix"))
    return cases


# float32 PyTorch vs float32 ONNX Runtime: kernels sum in different orders, so the
# softmax outputs differ by rounding, far below this.
PARITY_TOLERANCE = 1e-4


def wide_photo_batch(height: int = 45, width: int = 131) -> np.ndarray:
    """A toy pet photo squeezed to a 1:3 input (odd sides, no letterbox), normalised as inference does."""
    from petseg.data.letterbox import normalize_array
    from petseg.data.toy import make_toy_image
    from petseg.models.config import IMAGENET_MEAN, IMAGENET_STD

    photo, _ = make_toy_image(np.random.default_rng(3), 96)
    wide = np.asarray(Image.fromarray(photo).resize((width, height), Image.BILINEAR))
    return normalize_array(wide[None], IMAGENET_MEAN, IMAGENET_STD)


def torch_probabilities(model, batch: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return torch.softmax(model.eval()(torch.from_numpy(batch)), dim=1).numpy()


@pytest.mark.parametrize("name, options", registry_cases())
def test_onnx_probabilities_match_pytorch(name, options):
    """Every registry model, exported with dynamic sizes, on a 1:3 photo and a square batch of 2."""
    from petseg.inference.backends import OnnxBackend
    from petseg.inference.export import export_onnx
    from petseg.models import create_model

    if name == "unet_diy":
        options = {**options, "width": 8}
    model = create_model(name, pretrained=False, image_size=64, **options)
    backend = OnnxBackend(export_onnx(model))
    square = np.random.default_rng(0).standard_normal((2, 3, 64, 64), dtype=np.float32)
    for batch in (wide_photo_batch(), square):
        expected = torch_probabilities(model, batch)
        got = backend(batch)
        assert got.shape == expected.shape == (len(batch), 3, *batch.shape[2:])
        np.testing.assert_allclose(got, expected, rtol=0, atol=PARITY_TOLERANCE)


def test_the_parity_check_sees_a_different_model():
    """max_probability_difference (export's guard) must report a wrong export, not hide it."""
    import torch

    from petseg.inference.export import export_onnx, max_probability_difference
    from petseg.models import create_model

    torch.manual_seed(0)
    model = create_model("unet_diy", width=8, image_size=64)
    torch.manual_seed(1)
    other = create_model("unet_diy", width=8, image_size=64)
    assert max_probability_difference(model, export_onnx(model)) < PARITY_TOLERANCE
    batch = wide_photo_batch()
    actual_gap = np.abs(torch_probabilities(model, batch) - torch_probabilities(other, batch)).max()
    assert actual_gap > 0.01  # the two random nets really disagree
    assert max_probability_difference(model, export_onnx(other)) > 0.01


def test_a_dangling_symbolic_link_is_not_replaced_without_force(toy_model_file, tmp_path):
    """exists() calls a link to nowhere absent; the export wrote over it (the link became a file)."""
    from petseg.inference.export import export_and_verify
    from petseg.models import load_model

    link = tmp_path / "model.onnx"
    link.symlink_to(tmp_path / "nowhere")
    with pytest.raises(PetsegError, match="model.onnx: already exists; force overwrites it"):
        export_and_verify(load_model(toy_model_file), link)
    assert link.is_symlink()
    export_and_verify(load_model(toy_model_file), link, force=True)
    assert link.is_file() and not link.is_symlink()


def test_export_command_writes_a_self_describing_model_once(toy_model_file, tmp_path):
    from petseg.cli import app
    from petseg.inference import Segmenter

    target = tmp_path / "toy.onnx"
    runner = CliRunner()
    result = runner.invoke(app, ["export", str(toy_model_file.parent), "--onnx", str(target)])
    assert result.exit_code == 0, result.output
    assert "max probability difference" in result.output
    again = runner.invoke(app, ["export", str(toy_model_file), "--onnx", str(target)])
    assert isinstance(again.exception, PetsegError)
    # The library's advice names the keyword argument; the command line names the flag.
    assert str(again.exception).endswith("already exists; force overwrites it")
    assert again.exception.worded(command_line_flag).endswith("already exists; --force overwrites it")
    assert runner.invoke(app, ["export", str(toy_model_file), "--onnx", str(target), "--force"]).exit_code == 0
    onnx_segmenter = Segmenter.load(target)
    assert onnx_segmenter.backend.name == "onnx"
    assert onnx_segmenter.config == Segmenter.load(toy_model_file).config
    (tmp_path / "a file").write_text("in the way")
    (tmp_path / "folder.onnx").mkdir()
    for where, words in ((tmp_path / "a file" / "m.onnx", "cannot write the model"),
                         (tmp_path / "folder.onnx", "is a folder; name the .onnx file to write")):
        failed = runner.invoke(app, ["export", str(toy_model_file), "--onnx", str(where), "--force"])
        assert isinstance(failed.exception, PetsegError) and f"{where}: {words}" in str(failed.exception)


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


def test_int8_export_is_calibrated_on_photos_and_still_cuts_out(toy_model_file, toy_data, toy_photo, tmp_path):
    import onnx

    from petseg.cli import app
    from petseg.inference import Segmenter
    from petseg.inference.quantize import PRECISION_METADATA_KEY
    from tests.test_inference_toy_model import foreground_iou

    target = tmp_path / "toy-int8.onnx"
    runner = CliRunner()
    result = runner.invoke(app, ["export", str(toy_model_file), "--onnx", str(target), "--int8",
                                 "--calibration", str(toy_data / "images")])
    assert result.exit_code == 0, result.output
    assert "int8 moves probabilities by at most" in result.output
    metadata = {prop.key: prop.value for prop in onnx.load(str(target)).metadata_props}
    assert metadata[PRECISION_METADATA_KEY] == "int8 (decoder)"
    graph = onnx.load(str(target)).graph
    dequantized = {node.output[0] for node in graph.node if node.op_type == "DequantizeLinear"}
    int8_convs = {node.name for node in graph.node if node.op_type == "Conv" and node.input[1] in dequantized}
    float_convs = {node.name for node in graph.node if node.op_type == "Conv"} - int8_convs
    # The default scope: the decoder in int8; the encoder, the head and its softmax left float,
    # so that the probabilities are not rounded to uint8 steps.
    assert int8_convs and all("/encoder/" not in name and "/head/" not in name for name in int8_convs), int8_convs
    assert float_convs and all("/encoder/" in name or "/head/" in name for name in float_convs), float_convs
    assert any("/head/" in name for name in float_convs), float_convs
    producers = {output: node for node in graph.node for output in node.output}
    softmax_end = producers[graph.output[0].name]  # the written-out softmax's last step
    assert softmax_end.op_type == "Div"
    softmax = [node for node in graph.node if node.name.count("/") == 1 and node.op_type != "Constant"]
    assert [node.op_type for node in softmax] == ["ReduceMax", "Sub", "Exp", "ReduceSum", "Div"], softmax
    assert not any(producers[name].op_type == "DequantizeLinear" for node in softmax for name in node.input
                   if name in producers), "the softmax is computed in float"

    int8, float32 = Segmenter.load(target), Segmenter.load(toy_model_file)
    assert int8.config == float32.config
    photo, labels = toy_photo
    quantized, reference = int8.predict(photo), float32.predict(photo)
    # int8 rounds every activation; on a photo like those it was calibrated on the
    # probabilities move a little and the pet stays where it was.
    assert np.abs(quantized - reference).mean() < 0.05
    assert foreground_iou(quantized.argmax(0) != 1, labels) > foreground_iou(reference.argmax(0) != 1, labels) - 0.05

    # An int8 model can also be made from a float .onnx file.
    from_onnx = tmp_path / "from-onnx.onnx"
    float_onnx = tmp_path / "float.onnx"
    assert runner.invoke(app, ["export", str(toy_model_file), "--onnx", str(float_onnx)]).exit_code == 0
    result = runner.invoke(app, ["export", str(float_onnx), "--onnx", str(from_onnx), "--int8",
                                 "--calibration", str(toy_data / "images")])
    assert result.exit_code == 0, result.output


def test_int8_needs_calibration_photos(toy_model_file, tmp_path):
    from petseg.cli import app

    runner = CliRunner()
    target = tmp_path / "x.onnx"
    result = runner.invoke(app, ["export", str(toy_model_file), "--onnx", str(target), "--int8"])
    assert result.exit_code == 2 and "--calibration" in result.output
    # A scope without --int8 was silently ignored: the user thought the file was quantized.
    result = runner.invoke(app, ["export", str(toy_model_file), "--onnx", str(target), "--int8-scope", "all"])
    assert result.exit_code == 2 and "--int8-scope goes with --int8" in result.output and not target.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.jpg").write_text("not a photo")
    result = runner.invoke(app, ["export", str(toy_model_file), "--onnx", str(target), "--int8", "--calibration", str(empty)])
    assert isinstance(result.exception, PetsegError) and str(empty) in str(result.exception)
    assert "no readable photos" in str(result.exception)
    assert not target.exists()


def test_float16_weights_halve_the_file_and_onnx_runtime_computes_in_float32(toy_model_file, toy_photo, tmp_path):
    import onnx
    import onnxruntime
    from onnx import TensorProto

    from petseg.cli import app
    from petseg.inference import Segmenter
    from petseg.inference.quantize import PRECISION_METADATA_KEY

    full, half = tmp_path / "full.onnx", tmp_path / "half.onnx"
    runner = CliRunner()
    assert runner.invoke(app, ["export", str(toy_model_file), "--onnx", str(full)]).exit_code == 0
    result = runner.invoke(app, ["export", str(full), "--onnx", str(half), "--float16-weights"])
    assert result.exit_code == 0, result.output
    assert "float16 weights move probabilities by at most" in result.output
    assert half.stat().st_size < 0.6 * full.stat().st_size
    stored = onnx.load(str(half))
    assert {prop.key: prop.value for prop in stored.metadata_props}[PRECISION_METADATA_KEY] == "float32, float16 weights"
    assert any(tensor.data_type == TensorProto.FLOAT16 for tensor in stored.graph.initializer)
    again = tmp_path / "again.onnx"
    assert runner.invoke(app, ["export", str(half), "--onnx", str(again), "--float16-weights"]).exit_code == 0
    assert again.stat().st_size == pytest.approx(half.stat().st_size, rel=0.01)
    assert {prop.key: prop.value for prop in onnx.load(str(again)).metadata_props}[PRECISION_METADATA_KEY] == "float32, float16 weights"

    # ONNX Runtime folds the casts when it loads the model: what runs holds float32 weights only.
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(tmp_path / "as-run.onnx")
    onnxruntime.InferenceSession(str(half), options, providers=["CPUExecutionProvider"])
    as_run = onnx.load(str(tmp_path / "as-run.onnx")).graph
    assert not any(node.op_type == "Cast" for node in as_run.node)
    assert not any(tensor.data_type == TensorProto.FLOAT16 for tensor in as_run.initializer)

    photo, _ = toy_photo
    # float16 keeps about 3 significant digits of each weight; the probabilities move far less than a class
    np.testing.assert_allclose(Segmenter.load(half).predict(photo), Segmenter.load(full).predict(photo), atol=1e-2)


def test_float16_weights_leave_values_float16_cannot_hold_in_float32(toy_model_file):
    import onnx
    from onnx import TensorProto, numpy_helper

    from petseg.inference.export import export_onnx
    from petseg.inference.float16_weights import MIN_ELEMENTS, store_weights_float16
    from petseg.models import load_model

    graph = onnx.load_from_string(export_onnx(load_model(toy_model_file)))
    large = [tensor for tensor in graph.graph.initializer if tensor.data_type == TensorProto.FLOAT
             and numpy_helper.to_array(tensor).size >= MIN_ELEMENTS]
    assert len(large) > 1
    huge = large[0]
    huge.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(huge) * 0 + 1e6, huge.name))
    stored = {tensor.name: tensor for tensor in onnx.load_from_string(store_weights_float16(graph.SerializeToString())).graph.initializer}
    assert stored[huge.name].data_type == TensorProto.FLOAT  # 1e6 would be inf in float16
    assert all(stored[tensor.name + "_float16"].data_type == TensorProto.FLOAT16 for tensor in large[1:])


def test_an_export_removes_the_temporaries_a_killed_one_left(toy_model_file, tmp_path):
    from petseg.cli import app
    from tests.test_atomic import dead_pid

    stale = tmp_path / f".toy.onnx.petseg-tmp-{dead_pid()}-deadbeef"
    stale.write_bytes(b"half a model")
    result = CliRunner().invoke(app, ["export", str(toy_model_file), "--onnx", str(tmp_path / "toy.onnx")])
    assert result.exit_code == 0, result.output
    assert sorted(path.name for path in tmp_path.iterdir()) == ["toy.onnx"]


MANY_RUNS_CHILD = """
import sys
import numpy as np
from petseg.inference import Segmenter, onnx_memory

segmenter = Segmenter.load(sys.argv[1], backend="onnx", threads=1)
size = segmenter.config.image_size
onnx_memory.CALL_PIXELS = 16 * size * size  # runs of 16: each far under the cap
batch = np.zeros((int(sys.argv[2]), 3, size, size), np.float32)
print(segmenter.backend(batch).shape)
"""


def test_a_big_batch_keeps_no_answers_in_the_capped_arena(toy_model_file):
    """A batch runs a few images at a time; each run's answer is copied out of ONNX Runtime's
    arena, so 100 MB of answers pass through a 64 MB cap (they stayed in it: 320 photos of
    the bundled model ran out of its 384 MB and wrote nothing)."""
    import subprocess
    import sys

    from petseg.models import load_model

    size = load_model(toy_model_file).config.image_size
    count = 100 * 2**20 // (3 * size * size * 4)  # answers of 100 MB in float32
    child = subprocess.run([sys.executable, "-c", MANY_RUNS_CHILD, str(toy_model_file), str(count)],
                           capture_output=True, text=True, timeout=300, env={**os.environ, "PETSEG_ONNX_MEMORY_MB": "64"})
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.strip() == f"({count}, 3, {size}, {size})"


def test_int8_settings_are_refused_before_any_export_work(toy_model_file, toy_data, tmp_path, monkeypatch):
    """A calibration file instead of a folder, or an unknown scope, was refused 7 s in, after
    the export and its parity check."""
    from petseg.inference import export

    def exported(*args, **kwargs):
        raise AssertionError("the model was exported before its settings were checked")

    monkeypatch.setattr(export, "verified_onnx", exported)
    photo = next((toy_data / "images").iterdir())
    cases = [({"calibration": photo}, f"{photo}: calibration photos must be a folder"),
             ({"calibration": toy_data / "images", "int8_scope": "x" * 1000},
              f"int8 scope '{'x' * 100}…' is not one of decoder, all")]
    for settings, message in cases:
        with pytest.raises(PetsegError) as raised:
            export.export_and_verify(None, tmp_path / "x.onnx", **settings)
        assert str(raised.value) == message
