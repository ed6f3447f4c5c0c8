"""Where weights come from: local files (never unpickled), and a hub that cannot be reached."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import save_file

from petseg.errors import PetsegError
from petseg.models import create_model, load_model, save_model


def same_tensors(first: dict, second: dict) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_weights_from_an_encoder_safetensors_file(tmp_path):
    torch.manual_seed(1)
    source = create_model("unet_mobilenetv2")
    save_file(dict(source.encoder.net.state_dict()), str(tmp_path / "encoder.safetensors"))

    model = create_model("unet_mobilenetv2", weights=tmp_path / "encoder.safetensors")
    assert same_tensors(model.encoder.state_dict(), source.encoder.state_dict())


def test_weights_from_a_timm_classifier_pth_ignore_its_head(tmp_path):
    import timm

    classifier = timm.create_model("mobilenetv2_100")  # conv_head + classifier keys are not the encoder's
    torch.save(classifier.state_dict(), tmp_path / "mobilenetv2.pth")

    model = create_model("unet_mobilenetv2", weights=str(tmp_path / "mobilenetv2.pth"))
    torch.testing.assert_close(model.encoder.net.conv_stem.weight, classifier.conv_stem.weight, rtol=0, atol=0)


def test_weights_from_a_whole_petseg_model_file(tmp_path):
    torch.manual_seed(2)
    source = create_model("unet_diy", width=8)
    save_model(source, tmp_path / "diy.safetensors")
    model = create_model("unet_diy", width=8, weights=tmp_path / "diy.safetensors")
    assert same_tensors(model.state_dict(), source.state_dict())


def test_weights_that_do_not_fit_name_the_file(tmp_path):
    save_model(create_model("unet_diy", width=8), tmp_path / "diy.safetensors")
    with pytest.raises(PetsegError, match="diy.safetensors does not fit this model"):
        create_model("unet_diy", width=16, weights=tmp_path / "diy.safetensors")
    with pytest.raises(PetsegError, match="does not exist"):
        create_model("unet_diy", weights=tmp_path / "missing.pth")


class NotATensor:  # what a malicious or foreign pickle would carry
    pass


def test_pickled_objects_are_refused_not_unpickled(tmp_path):
    torch.save({"conv_stem.weight": NotATensor()}, tmp_path / "evil.pth")
    with pytest.raises(PetsegError) as raised:
        create_model("unet_mobilenetv2", weights=tmp_path / "evil.pth")
    message = str(raised.value)
    assert message == f"weights file {tmp_path / 'evil.pth'} holds objects other than tensors and plain values, which petseg does not load"
    # torch's own message advises weights_only=False, i.e. running the file's code: never relayed.
    assert "weights_only" not in message and "\n" not in message
    (tmp_path / "photo.pth").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(PetsegError, match="photo.pth is not a readable state dict"):
        create_model("unet_mobilenetv2", weights=tmp_path / "photo.pth")


def test_load_model_rejects_files_that_are_not_petseg_models(tmp_path):
    save_file({"weight": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(PetsegError, match="no petseg_config metadata"):
        load_model(tmp_path / "plain.safetensors")
    (tmp_path / "notes.safetensors").write_text("hello")
    with pytest.raises(PetsegError, match="notes.safetensors is not a .safetensors file"):
        load_model(tmp_path / "notes.safetensors")
    with pytest.raises(PetsegError, match="must end in .safetensors"):
        save_model(create_model("unet_diy", width=8), tmp_path / "model.pt")


@pytest.mark.slow  # a fresh interpreter, so HF_HUB_OFFLINE is read at import as users set it
def test_pretrained_hub_weights_offline_fail_fast_with_what_to_do(tmp_path):
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-hf-home")}
    script = (
        "import petseg\n"
        "from petseg.errors import PetsegError\n"
        "try:\n"
        "    petseg.create_model('unet_mobilenetv3', pretrained=True)\n"
        "except PetsegError as error:\n"
        "    print(error)\n"
    )
    started = time.monotonic()
    command = [sys.executable, "-c", script]
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    message = result.stdout.strip()
    assert len(message.splitlines()) == 1
    assert "unet_mobilenetv3" in message and "give weights a local .safetensors or .pth file, or turn pretrained off" in message
    assert "Retrying" not in result.stderr, "no hub retries: the answer comes at once"
    assert elapsed < 60, f"took {elapsed:.0f} s (a hub with retries takes minutes)"


def test_pretrained_hub_weights_with_an_unreachable_hub_fail_fast(tmp_path, monkeypatch):
    from huggingface_hub import constants

    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    started = time.monotonic()
    with pytest.raises(PetsegError, match=r"127\.0\.0\.1 is unreachable.*give weights a local .*turn pretrained off"):
        create_model("unet_mobilenetv2", pretrained=True)
    assert time.monotonic() - started < 10
