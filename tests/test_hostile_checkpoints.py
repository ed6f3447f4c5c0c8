"""Small crafted files that would take loading to gigabytes (checkpoints, --weights files),
refused before anything is loaded, and config paths that would write a run in the current
folder. Sizes here are small: the refusal's message proves the check ran, not memory."""

from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import asdict

import numpy as np
import pytest
import torch

from petseg.errors import PetsegError
from petseg.models.pretrained import read_state_dict
from petseg.train.checkpoint import CHECKPOINT_FORMAT, capture_rng_states, load_checkpoint, restore_rng_states

STRETCHED = 10_000_000  # one value seen as this many (stride 0): 80 MB of int64 once converted


def deflated(content) -> bytes:
    """`content` as torch.save writes it, its records then deflated, as a crafted file has them."""
    saved, crafted = io.BytesIO(), io.BytesIO()
    torch.save(content, saved)
    with zipfile.ZipFile(saved) as source, zipfile.ZipFile(crafted, "w", zipfile.ZIP_DEFLATED) as target:
        for record in source.infolist():
            target.writestr(record.filename, source.read(record))
    return crafted.getvalue()


def _crafted_rng_states(part: str):
    states = capture_rng_states()
    if part == "numpy keys":
        states["numpy"]["keys"] = torch.zeros(1, dtype=torch.int64).expand(STRETCHED)
    elif part == "torch state":
        states["torch"] = torch.zeros(1, dtype=torch.uint8).expand(STRETCHED)
    else:
        states["numpy"]["keys"] = states["numpy"]["keys"].double()
    return states


@pytest.mark.parametrize("part, words", [
    ("numpy keys", f"numpy keys: {STRETCHED} int64, not 624 int64"),
    ("torch state", f"torch state: {STRETCHED} uint8, not 5056 uint8"),
    ("numpy keys as floats", "numpy keys: 624 float64, not 624 int64"),
])
def test_rng_states_unlike_this_machines_are_refused_before_conversion(part, words):
    numpy_before, torch_before = np.random.get_state(), torch.get_rng_state()
    try:
        with pytest.raises(ValueError, match=words):
            restore_rng_states(_crafted_rng_states(part))
    finally:  # the old code restored them: leave the next tests the RNGs they had
        np.random.set_state(numpy_before)
        torch.set_rng_state(torch_before)


def test_a_checkpoint_whose_records_inflate_is_refused_before_loading(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(deflated({"format": CHECKPOINT_FORMAT, "junk": torch.zeros(64 * 2**20, dtype=torch.uint8)}))
    assert path.stat().st_size < 2**20
    with pytest.raises(PetsegError, match="holds compressed records that would inflate to 64.0 MB") as raised:
        load_checkpoint(path)
    assert str(raised.value).startswith(f"{path}: ") and "\n" not in str(raised.value)


def test_weights_whose_records_inflate_are_refused_and_lightly_deflated_ones_load(tmp_path):
    bomb, light = tmp_path / "bomb.pth", tmp_path / "light.pth"
    bomb.write_bytes(deflated({"junk": torch.zeros(64 * 2**20, dtype=torch.uint8)}))
    with pytest.raises(PetsegError, match=f"weights file {bomb} holds compressed records that would inflate"):
        read_state_dict(bomb)
    weights = {"conv.weight": torch.randn(64, 32, 3, 3), "conv.bias": torch.zeros(64)}
    light.write_bytes(deflated(weights))  # another tool's compression, within limits: read as before
    loaded = read_state_dict(light)
    assert all(torch.equal(loaded[name], weights[name]) for name in weights)


def _write_safetensors_header(path, header: dict) -> None:
    text = json.dumps(header, separators=(",", ":")).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text)


@pytest.mark.parametrize("header, words", [
    ({f"t{index}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for index in range(30_000)},
     "holds 30000 tensors, over 20000: more than any model petseg trains"),
    ({"__metadata__": {"x": "x" * (17 * 2**20)}}, "bytes, over 16777216: more than any model petseg trains"),
])
def test_safetensors_weights_pass_a_model_files_header_limits(tmp_path, header, words):
    path = tmp_path / "weights.safetensors"
    _write_safetensors_header(path, header)
    with pytest.raises(PetsegError, match=f"weights file {path} (has a header of|holds)") as raised:
        read_state_dict(path)
    assert words in str(raised.value)


def test_weights_that_are_a_folder_or_a_fifo_say_so(tmp_path):
    with pytest.raises(PetsegError, match="is a folder: give the .safetensors or .pth file in it"):
        read_state_dict(tmp_path)
    os.mkfifo(tmp_path / "pipe.pth")  # opening it would wait for a writer forever
    with pytest.raises(PetsegError, match=r"pipe.pth is a FIFO \(named pipe\), not a regular file"):
        read_state_dict(tmp_path / "pipe.pth")
    with pytest.raises(PetsegError, match="does not exist"):
        read_state_dict(tmp_path / "missing.pth")


@pytest.mark.parametrize("name", ["out", "data", "weights", "cache_dir"])
def test_an_empty_path_in_a_config_file_is_refused(tmp_path, name):
    from petseg.train import resolve_config
    from petseg.train.configure import read_config_file

    settings = asdict(resolve_config("unet_diy", str(tmp_path / "data"), str(tmp_path / "run")))
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**settings, name: ""}))
    with pytest.raises(PetsegError) as raised:
        read_config_file(path)
    expected = f"{name} must name a file or folder, got '' (an empty path is the current folder)"
    assert str(raised.value) == f"{path}: {expected}"
