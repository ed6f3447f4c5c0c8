"""Model files are user input: hostile configs and foreign ONNX graphs are refused in one
line, before anything is built from them; 2-class models cut out, 1-class models are
refused in one line, and trimap scores need the trimap's three classes."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from petseg.errors import PetsegError
from petseg.models.config import ModelConfig

PEAK_MEMORY_LIMIT_MB = 500
VALID = json.loads(ModelConfig("unet_diy", image_size=32, options={"width": 4, "depth": 2}).to_json())

# (what is wrong, the config's changed fields, words the one-line error must contain)
HOSTILE_CONFIGS = [
    ("a billion classes", {"num_classes": 1_000_000_000}, "num_classes must be an integer in 1..256"),
    ("zero classes", {"num_classes": 0}, "num_classes"),
    ("classes as text", {"num_classes": "3"}, "num_classes"),
    ("classes as true", {"num_classes": True}, "num_classes"),
    ("float image size", {"image_size": 224.0}, "image_size must be an integer in 32..2048, got 224.0"),
    ("tiny image size", {"image_size": 8}, "image_size"),
    ("huge image size", {"image_size": 1_000_000}, "image_size"),
    ("256 classes at 2048 px: 4.3 GB of probabilities a photo",
     {"num_classes": 256, "image_size": 2048, "labels": [f"c{i}" for i in range(256)]},
     "num_classes x image_size^2 must be at most 67,108,864"),
    ("one mean", {"mean": [1]}, "mean must be 3 numbers"),
    ("mean as text", {"mean": "gray"}, "mean"),
    ("mean out of range", {"mean": [2, 2, 2]}, "mean"),
    ("mean NaN", {"mean": [math.nan, 0.5, 0.5]}, "mean"),
    ("zero std", {"std": [0, 0, 0]}, "std must be 3 numbers"),
    ("negative std", {"std": [-0.2, 0.2, 0.2]}, "std"),
    ("infinite std", {"std": [math.inf, 0.2, 0.2]}, "std"),
    ("options as text", {"options": "abc"}, "options must be a mapping"),
    ("options as list", {"options": [1, 2]}, "options must be a mapping"),
    ("huge width", {"options": {"width": 1_000_000_000}}, "options.width"),
    ("huge depth", {"options": {"depth": 40}}, "options.depth"),
    ("deep and wide", {"options": {"width": 64, "depth": 6}}, "deepest level"),
    ("float width", {"options": {"width": 8.5}}, "options.width"),
    ("huge decoder", {"options": {"decoder_channels": [10**9] * 5}}, "options.decoder_channels"),
    ("decoder as text", {"options": {"decoder_channels": "wide"}}, "options.decoder_channels"),
    ("freeze as text", {"options": {"freeze_encoder": "yes"}}, "options.freeze_encoder"),
    ("nested option", {"options": {"mystery": {"a": [1] * 1000}}}, "options.mystery is not an option"),
    # create_model's own parameters: a traceback, a download, or another file read.
    ("classes as an option", {"options": {"num_classes": 3}}, "options.num_classes is not an option"),
    ("pretrained as an option", {"options": {"pretrained": True}}, "options.pretrained is not an option"),
    ("weights as an option", {"options": {"weights": "/etc/hostname"}}, "options.weights is not an option"),
    ("a newline in an option", {"options": {"a\nb": 1}}, "options.a\\nb is not an option"),
    ("labels too few", {"labels": ["pet"]}, "labels must be a list of num_classes (3)"),
    ("labels not text", {"labels": [1, 2, 3]}, "labels"),
    ("a label twice", {"labels": ["pet", "pet", "pet"]}, "labels must name each class once"),
    ("architecture not text", {"architecture": 5}, "architecture"),
    ("no architecture", {"architecture": None}, "architecture"),
]
# Whole metadata values that are not a config at all.
HOSTILE_TEXTS = [
    ("not JSON", "{", "Expecting"),
    ("a JSON list", "[]", "must be a JSON object"),
    ("nested deeply", "[" * 20_000 + "]" * 20_000, "nested too deeply"),
    ("a megabyte", json.dumps({**VALID, "padding": "x" * 1_000_000}), "at most 65536 characters"),
]


def config_text(changes: dict) -> str:
    values = {**VALID, **changes}
    return json.dumps({key: value for key, value in values.items() if value is not None})


# A valid config over tensors that are not a petseg model's: refused from the header alone.
HOSTILE_TENSORS = [
    ("someone else's weights", {"weight": np.zeros(1, np.float32)}, "tensor 'weight' (F32) is not part of a petseg model"),
    ("integer weights", {"head.weight": np.zeros(4, np.int32)}, "tensor 'head.weight' (I32) is not part of"),
    ("a name a megabyte long", {"x" * 1_000_000: np.zeros(1, np.float32)}, "xxx…' (F32) is not part of"),
    ("no head", {"encoder.0.weight": np.zeros(4, np.float32)}, "has no head weights"),
    # A million of them (a 64 MB header) took loading to 1.45 GB and 28 s.
    ("30,000 empty tensors", {f"head.x{index}": np.zeros(0, np.float32) for index in range(30_000)},
     "holds 30000 tensors, over 20000: not a petseg model"),
    ("a 17 MB header", {"head." + "x" * (17 * 2**20): np.zeros(1, np.float32)}, "bytes, over 16777216: not a petseg"),
]


def write_model_file(path: Path, text: str, tensors: dict | None = None) -> Path:
    """A tiny .safetensors file (one float by default) whose petseg_config is `text`: what an attacker sends."""
    from safetensors.numpy import save_file

    save_file(tensors or {"weight": np.zeros(1, np.float32)}, str(path), metadata={"petseg_config": text})
    return path


def hostile_files(folder: Path) -> list[tuple[Path, str]]:
    cases = [(config_text(changes), None, words) for _, changes, words in HOSTILE_CONFIGS]
    cases += [(text, None, words) for _, text, words in HOSTILE_TEXTS]
    cases += [(config_text({}), tensors, words) for _, tensors, words in HOSTILE_TENSORS]
    return [(write_model_file(folder / f"{index}.safetensors", text, tensors), words)
            for index, (text, tensors, words) in enumerate(cases)]


@pytest.mark.parametrize("changes, words", [case[1:] for case in HOSTILE_CONFIGS], ids=[case[0] for case in HOSTILE_CONFIGS])
def test_hostile_configs_are_refused_in_one_line(tmp_path, changes, words):
    from petseg.models import read_config

    path = write_model_file(tmp_path / "hostile.safetensors", config_text(changes))
    with pytest.raises(PetsegError) as raised:
        read_config(path)
    message = str(raised.value)
    assert str(path) in message and words in message and "\n" not in message and len(message) < 400


@pytest.mark.parametrize("text, words", [case[1:] for case in HOSTILE_TEXTS], ids=[case[0] for case in HOSTILE_TEXTS])
def test_metadata_that_is_no_config_is_refused_in_one_line(tmp_path, text, words):
    from petseg.models import read_config

    path = write_model_file(tmp_path / "hostile.safetensors", text)
    with pytest.raises(PetsegError, match=words) as raised:
        read_config(path)
    assert "\n" not in str(raised.value) and len(str(raised.value)) < 400


@pytest.mark.parametrize("tensors, words", [case[1:] for case in HOSTILE_TENSORS], ids=[case[0] for case in HOSTILE_TENSORS])
def test_foreign_tensors_are_refused_from_the_header(tmp_path, tensors, words):
    from petseg.models import read_config

    path = write_model_file(tmp_path / "foreign.safetensors", config_text({}), tensors)
    with pytest.raises(PetsegError) as raised:
        read_config(path)
    message = str(raised.value)
    assert str(path) in message and words in message and "\n" not in message and len(message) < 400


def test_tensor_names_that_do_not_fit_are_echoed_cut_short(tmp_path):
    """A 10 MB tensor name came back whole in a 10 MB error line."""
    import torch
    from safetensors.torch import save_file

    from petseg.models import create_model, load_model

    model = create_model("unet_diy", width=4, depth=2, image_size=32)
    tensors = {**model.state_dict(), "head." + "x" * 1_000_000: torch.zeros(1)}
    path = tmp_path / "long-name.safetensors"
    save_file(tensors, str(path), metadata={"petseg_config": model.config.to_json()})
    with pytest.raises(PetsegError) as raised:
        load_model(path)
    message = str(raised.value)
    assert "unexpected head." + "x" * 90 in message and "…" in message and len(message) < 400


def test_create_model_checks_before_building():
    from petseg.models import create_model

    with pytest.raises(PetsegError, match="num_classes must be an integer in 1..256"):
        create_model("unet_diy", num_classes=10**9)
    with pytest.raises(PetsegError, match="options.width"):
        create_model("unet_diy", width=10**6)


LOAD_ALL_CHILD = """
import json, sys
from petseg.inference import Segmenter
from petseg.errors import PetsegError

results = []
for path in sys.argv[1:]:
    try:
        Segmenter.load(path)
        results.append("loaded")
    except PetsegError as error:
        results.append(str(error))
with open("/proc/self/status") as status:
    peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
print(json.dumps({"errors": results, "torch": "torch" in sys.modules, "peak_mb": peak}))
"""


def test_hostile_model_files_cost_little_memory_and_never_load_torch(tmp_path):
    """Every hostile file through Segmenter.load (what cutout, serve and evaluate call), in a fresh process.

    Peak memory is the child's own VmHWM: getrusage's ru_maxrss would carry over this
    pytest process's peak across exec.
    """
    files = hostile_files(tmp_path)
    child = subprocess.run([sys.executable, "-c", LOAD_ALL_CHILD, *(str(path) for path, _ in files)],
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    result = json.loads(child.stdout)
    for (path, words), error in zip(files, result["errors"]):
        assert words in error and str(path) in error and "\n" not in error, (path, error)
    assert not result["torch"], "a refused config must not even import torch"
    assert result["peak_mb"] < PEAK_MEMORY_LIMIT_MB, result["peak_mb"]


def test_the_cli_refuses_a_hostile_model_in_one_line(tmp_path):
    from PIL import Image

    Image.new("RGB", (40, 30)).save(tmp_path / "cat.jpg")
    path = write_model_file(tmp_path / "billion.safetensors", config_text({"num_classes": 1_000_000_000}))
    result = subprocess.run([sys.executable, "-m", "petseg", "cutout", str(tmp_path / "cat.jpg"), "--model", str(path),
                             "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: model file {path}") and "num_classes must be an integer in 1..256" in line


# --- ONNX graphs must match their metadata ----------------------------------------------------


def onnx_file(path: Path, config: dict, *, nodes, inputs, outputs) -> Path:
    """An ONNX model with petseg's metadata copied onto an arbitrary graph."""
    import onnx
    from onnx import helper

    graph = helper.make_graph(nodes, "foreign", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"petseg_config": json.dumps(config)})
    onnx.save(model, str(path))
    return path


def tensor(name: str, shape) -> object:
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def foreign_graphs():
    """(what it is, graph description, config changes, words of the refusal)."""
    from onnx import helper

    image = tensor("images", ["batch", 3, "height", "width"])
    same = tensor("probabilities", ["batch", 3, "height", "width"])
    return [
        ("identity: right names and shapes, not probabilities",
         dict(nodes=[helper.make_node("Identity", ["images"], ["probabilities"])], inputs=[image], outputs=[same]),
         {}, "not class probabilities"),
        ("another input name",
         dict(nodes=[helper.make_node("Softmax", ["input"], ["probabilities"], axis=1)],
              inputs=[tensor("input", ["batch", 3, "height", "width"])], outputs=[same]),
         {}, "not one 'images' and one 'probabilities'"),
        ("a classifier's output",
         dict(nodes=[helper.make_node("ReduceMean", ["images"], ["probabilities"], axes=[2, 3], keepdims=0)],
              inputs=[image], outputs=[tensor("probabilities", ["batch", 3])]),
         {}, "expected float (batch, 3, height, width)"),
        ("fewer classes than its config",
         dict(nodes=[helper.make_node("Softmax", ["images"], ["probabilities"], axis=1)], inputs=[image], outputs=[same]),
         {"num_classes": 4, "labels": ["a", "b", "c", "d"]}, "for the 4 classes its config names"),
        ("a hostile config",
         dict(nodes=[helper.make_node("Softmax", ["images"], ["probabilities"], axis=1)], inputs=[image], outputs=[same]),
         {"num_classes": 10**9}, "num_classes must be an integer"),
        ("a fixed batch of one photo",
         dict(nodes=[helper.make_node("Softmax", ["images"], ["probabilities"], axis=1)],
              inputs=[tensor("images", [1, 3, "height", "width"])],
              outputs=[tensor("probabilities", [1, 3, "height", "width"])]),
         {}, "the ONNX model fails on a batch of 2 32x32 images"),
    ]  # fmt: skip


@pytest.mark.parametrize("index", range(6))
def test_foreign_onnx_graphs_are_refused_before_first_use(tmp_path, index):
    from petseg.inference import Segmenter

    name, graph, changes, words = foreign_graphs()[index]
    path = onnx_file(tmp_path / "foreign.onnx", {**VALID, **changes}, **graph)
    with pytest.raises(PetsegError, match=re.escape(words)) as raised:
        Segmenter.load(path)
    assert str(path) in str(raised.value) and "\n" not in str(raised.value), name


def test_an_exported_model_passes_the_same_checks(tmp_path):
    from petseg.inference import Segmenter
    from petseg.models import create_model

    segmenter = Segmenter.from_model(create_model("unet_diy", width=4, depth=2, image_size=32), "onnx")
    [probabilities] = segmenter.predict([np.zeros((20, 50, 3), np.uint8)])
    assert probabilities.shape == (3, 20, 50)
    np.testing.assert_allclose(probabilities.sum(axis=0), 1.0, atol=1e-4)


# --- models with 1 or 2 classes --------------------------------------------------------------


@pytest.fixture(scope="module")
def two_class_model_file(tmp_path_factory):
    from petseg.models import create_model, save_model

    path = tmp_path_factory.mktemp("two") / "two.safetensors"
    save_model(create_model("unet_diy", num_classes=2, width=4, depth=2, image_size=32), path)
    return path


@pytest.mark.parametrize("num_classes", [2, 3, 256])
def test_any_class_count_in_range_saves_loads_and_predicts(tmp_path, num_classes):
    from petseg.inference import Segmenter
    from petseg.models import create_model, load_model, save_model

    path = save_model(create_model("unet_diy", num_classes=num_classes, width=4, depth=2, image_size=32), tmp_path / "m.safetensors")
    assert load_model(path).config.num_classes == num_classes
    [probabilities] = Segmenter.load(path).predict([np.zeros((20, 50, 3), np.uint8)])
    assert probabilities.shape == (num_classes, 20, 50)


def test_a_one_class_model_is_refused_in_one_line(tmp_path):
    from petseg.inference import Segmenter
    from petseg.models import create_model, load_model, save_model

    path = save_model(create_model("unet_diy", num_classes=1, width=4, depth=2, image_size=32), tmp_path / "m.safetensors")
    assert load_model(path).config.num_classes == 1  # a valid model file...
    with pytest.raises(PetsegError, match="1 class cannot cut out: it needs pet and background classes"):
        Segmenter.load(path)  # ...that cannot make a cutout


def test_a_two_class_model_cuts_out_from_the_cli(tmp_path, two_class_model_file):
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a.jpg", "b.jpg"):
        Image.new("RGB", (40, 30)).save(photos / name)
    result = subprocess.run([sys.executable, "-m", "petseg", "cutout", str(photos), "--model", str(two_class_model_file),
                             "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    for name in ("a.png", "b.png"):
        with Image.open(tmp_path / "out" / name) as cutout:
            assert (cutout.mode, cutout.size) == ("RGBA", (40, 30))


def test_a_two_class_model_cuts_out_but_is_refused_by_trimap_scores(two_class_model_file, toy_data):
    from petseg.data.layouts import load_samples
    from petseg.evaluate import evaluate
    from petseg.inference import Segmenter, remove_background

    segmenter = Segmenter.load(two_class_model_file)
    cutout = remove_background(np.zeros((30, 40, 3), np.uint8), segmenter=segmenter)
    assert cutout.shape == (30, 40, 4)
    with pytest.raises(PetsegError, match=r"classes \(class_0, class_1\) are not pet, background, border"):
        evaluate(segmenter, load_samples(toy_data, "all")[:2])


def test_named_classes_without_pet_and_background_are_refused(tmp_path):
    from petseg.inference import Segmenter
    from petseg.models import create_model, save_model

    model = create_model("unet_diy", width=4, depth=2, image_size=32)
    model.config.labels = ("x", "y", "z")  # named, but none of them is the pet
    path = save_model(model, tmp_path / "xyz.safetensors")
    with pytest.raises(PetsegError, match=r"classes \(x, y, z\) name no 'pet' and 'background'"):
        Segmenter.load(path)


def test_nan_weights_are_a_one_line_error_not_wrong_cutouts(tmp_path):
    import torch

    from petseg.inference import Segmenter, remove_background
    from petseg.models import create_model, save_model

    model = create_model("unet_diy", width=4, depth=2, image_size=32)
    with torch.no_grad():
        for weight in model.head.parameters():
            weight.fill_(float("nan"))
    path = save_model(model, tmp_path / "nan.safetensors")
    with pytest.raises(PetsegError, match=r"nan\.safetensors: the model's probabilities are NaN or infinite"):
        remove_background(np.zeros((30, 40, 3), np.uint8), segmenter=Segmenter.load(path))


def test_an_unknown_architecture_names_the_model_file(tmp_path):
    from petseg.models import load_model

    path = write_model_file(tmp_path / "odd.safetensors", config_text({"architecture": "unet_nonexistent"}),
                            {"head.weight": np.zeros(1, np.float32)})
    with pytest.raises(PetsegError, match=r"^model file .*odd\.safetensors: unknown model 'unet_nonexistent'"):
        load_model(path)


PEAK_MB = """
with open("/proc/self/status") as status:
    peak_mb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
"""
BIG_ARCHITECTURE_CHILD = """
import json, sys
from petseg.models import load_model
from petseg.errors import PetsegError

try:
    load_model(sys.argv[1])
    error = "loaded"
except PetsegError as caught:
    error = str(caught)
""" + PEAK_MB + "print(json.dumps({'error': error, 'peak_mb': peak_mb}))"
IMPORTS_CHILD = "import json, timm, torch, petseg.models.registry, safetensors.torch\n" + PEAK_MB + "print(peak_mb)"


def test_a_tiny_file_naming_a_big_architecture_is_refused_while_it_builds(tmp_path):
    # unet_resnet50 is 98 MB in float32: a file of one number cannot fill it. A 200-byte file
    # naming unet_convnext_xxlarge (846 M parameters) took petseg past 3 GB before this.
    path = write_model_file(tmp_path / "big.safetensors", config_text({"architecture": "unet_resnet50", "options": {}}),
                            {"head.weight": np.zeros(1, np.float32)})
    child = subprocess.run([sys.executable, "-c", BIG_ARCHITECTURE_CHILD, str(path)],
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    result = json.loads(child.stdout)
    assert result["error"].startswith(f"model file {path}: its architecture 'unet_resnet50' builds a model of over 64 MB,")
    assert result["error"].endswith("more than the file's 4 bytes of weights can fill")
    imports = subprocess.run([sys.executable, "-c", IMPORTS_CHILD], capture_output=True, text=True, timeout=300)
    imports_mb = float(imports.stdout)
    # Over what PyTorch and timm cost to import: the 64 MB allowed, and 40 MB for the rest.
    assert result["peak_mb"] < imports_mb + 64 + 40, (result["peak_mb"], imports_mb)


def constant(name: str, values: np.ndarray):
    from onnx import helper, numpy_helper

    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(values, name))


def memory_bombs():
    """(what it is, nodes between "images" and "probabilities"): a softmax plus a huge tensor reduced to nothing."""
    from onnx import TensorProto, helper

    def filled(shape_name: str, out: str):
        return helper.make_node("ConstantOfShape", [shape_name], [out], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0]))

    softmax_plus = [helper.make_node("Softmax", ["images"], ["soft"], axis=1),
                    helper.make_node("ReduceSum", ["huge"], ["nothing"], keepdims=0),
                    helper.make_node("Add", ["soft", "nothing"], ["probabilities"])]
    return [
        ("4 GB of zeros, whatever the input", [constant("shape", np.array([1, 1024, 1024, 1024], np.int64)),
                                               filled("shape", "huge"), *softmax_plus]),
        ("a (HW x 1) @ (1 x HW) product: 64 MB at 64 px, 17 GB at 256 px", [
            helper.make_node("Shape", ["images"], ["dims"]),
            constant("two", np.array([2], np.int64)), constant("one", np.array([1], np.int64)),
            helper.make_node("Gather", ["dims", "two"], ["side"], axis=0),
            helper.make_node("Mul", ["side", "side"], ["pixels"]),
            helper.make_node("Concat", ["pixels", "one"], ["column_shape"], axis=0),
            helper.make_node("Concat", ["one", "pixels"], ["row_shape"], axis=0),
            filled("column_shape", "column"), filled("row_shape", "row"),
            helper.make_node("MatMul", ["column", "row"], ["huge"]), *softmax_plus]),
        ("1.2 GB in 50 MB pieces, each under any cap: twelve (64, N, 3, H, W) copies of the input, joined",
         [constant("copies", np.array([64, 1, 1, 1, 1], np.int64)),
          *[node for piece in range(12) for node in (
              constant(f"factor{piece}", np.array(piece, np.float32)),
              # Twelve distinct tensors (the check's blank images keep them zero, so it passes).
              helper.make_node("Mul", ["images", f"factor{piece}"], [f"moved{piece}"]),
              helper.make_node("Expand", [f"moved{piece}", "copies"], [f"piece{piece}"]))],
          helper.make_node("Concat", [f"piece{piece}" for piece in range(12)], ["huge"], axis=0), *softmax_plus]),
    ]  # fmt: skip


BOMB_CHILD = """
import json, sys
import numpy as np
from petseg.errors import PetsegError
from petseg.inference import Segmenter

try:
    Segmenter.load(sys.argv[1]).predict(np.zeros((200, 300, 3), np.uint8))
    error = "ran"
except PetsegError as caught:
    error = str(caught)
""" + PEAK_MB + "print(json.dumps({'error': error, 'peak_mb': peak_mb}))"


@pytest.mark.parametrize("index", range(3))
def test_an_onnx_memory_bomb_is_refused_by_the_capped_arena(tmp_path, index):
    name, nodes = memory_bombs()[index]
    image = tensor("images", ["batch", 3, "height", "width"])
    path = onnx_file(tmp_path / "bomb.onnx", {**VALID, "image_size": 256}, nodes=nodes, inputs=[image],
                     outputs=[tensor("probabilities", ["batch", 3, "height", "width"])])
    child = subprocess.run([sys.executable, "-c", BOMB_CHILD, str(path)], capture_output=True, text=True, timeout=300)
    result = json.loads(child.stdout)
    assert result["error"].startswith(f"{path}: the ONNX model needs more than the 384 MB petseg lets ONNX Runtime use"), name
    assert result["error"].endswith("; a model this big needs PETSEG_ONNX_MEMORY_MB set higher")
    assert "\n" not in result["error"] and child.stderr == "", "ONNX Runtime's own log lines stay out of the terminal"
    assert result["peak_mb"] < PEAK_MEMORY_LIMIT_MB, (name, result["peak_mb"])


@pytest.mark.parametrize("value", ["lots", "10", "nan", "inf", ""])
def test_the_onnx_memory_setting_is_checked(monkeypatch, value):
    from petseg.errors import PetsegError
    from petseg.inference import onnx_memory

    monkeypatch.setenv("PETSEG_ONNX_MEMORY_MB", value)
    onnx_memory.arena_bytes.cache_clear()
    try:
        with pytest.raises(PetsegError, match=r"^PETSEG_ONNX_MEMORY_MB must be a number of megabytes from 64 up, got '"):
            onnx_memory.arena_bytes()
        monkeypatch.setenv("PETSEG_ONNX_MEMORY_MB", "1024.5")
        onnx_memory.arena_bytes.cache_clear()
        assert onnx_memory.arena_bytes() == int(1024.5 * 2**20)
    finally:
        onnx_memory.arena_bytes.cache_clear()  # the next reader sees this process's real setting


def test_a_bad_onnx_memory_setting_stops_a_cutout_instead_of_lifting_the_cap(tmp_path):
    """The arena's registration swallowed the setting's error: 'abc' ran every session uncapped."""
    import os
    import subprocess
    import sys

    from PIL import Image

    Image.new("RGB", (40, 30), (200, 120, 40)).save(tmp_path / "photo.jpg")
    result = subprocess.run([sys.executable, "-m", "petseg", "cutout", "photo.jpg", "--out", "cut"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300, env={**os.environ, "PETSEG_ONNX_MEMORY_MB": "abc"})
    assert result.returncode == 2 and result.stderr.splitlines() == [
        "error: PETSEG_ONNX_MEMORY_MB must be a number of megabytes from 64 up, got 'abc'"], result.stderr
    assert not (tmp_path / "cut").exists()


def test_any_batch_size_runs_in_pieces_that_fit_the_arena(monkeypatch):
    from petseg.inference import Segmenter
    from petseg.inference import onnx_memory

    segmenter = Segmenter.load()  # the bundled model, 256 px
    photos = [np.full((60, 80, 3), value, np.uint8) for value in (0, 90, 180, 250, 30)]
    whole = segmenter.predict_batch(photos)
    monkeypatch.setattr(onnx_memory, "CALL_PIXELS", 2 * 256 * 256)  # two images a run: runs of 2, 2 and 1
    for one, pieced in zip(whole, segmenter.predict_batch(photos)):
        np.testing.assert_allclose(pieced.probabilities, one.probabilities, atol=1e-6)
    assert onnx_memory.images_per_run(2048, 2048) == 1 and onnx_memory.images_per_run(256, 256) == 2


def test_an_empty_model_path_and_a_best_model_that_is_no_file_are_named(tmp_path):
    """'' loaded the current folder as a run ("run folder has no best.safetensors"), and a
    best.safetensors linked to /dev/zero or made a folder read as "no finished epoch yet"."""
    from petseg.errors import PetsegError
    from petseg.models.files import resolve_model_path

    with pytest.raises(PetsegError, match=r"^the model's path is empty \(give a run folder"):
        resolve_model_path("")
    for kind, reason in (("device", "is a character device, not a regular file"), ("folder", "is a directory, not a file")):
        run = tmp_path / kind
        run.mkdir()
        (run / "best.safetensors").symlink_to("/dev/zero") if kind == "device" else (run / "best.safetensors").mkdir()
        with pytest.raises(PetsegError) as raised:
            resolve_model_path(run)
        assert str(raised.value) == f"{run / 'best.safetensors'}: cannot read the model file ({reason})"
