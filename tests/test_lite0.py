"""The offline EfficientNet-Lite0 weights: the key conversion is proven against the
package's own reference implementation (efficientnet-lite-pytorch, test-only)."""

from __future__ import annotations

import pytest
import torch

from petseg.models import create_model
from petseg.models.lite0 import TIMM_NAME, convert_lite0_state_dict, lite0_imagenet_state_dict, package_checkpoint_path

reference_package = pytest.importorskip("efficientnet_lite_pytorch", reason="efficientnet-lite-pytorch (dev extra)")


@pytest.fixture(scope="module")
def package_checkpoint() -> dict:
    return torch.load(package_checkpoint_path(), map_location="cpu", weights_only=True)


def reference_network(checkpoint: dict, image_size) -> torch.nn.Module:
    # image_size=None gives the reference 'SAME' padding computed per input, like timm's Conv2dSame.
    network = reference_package.EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
    network.load_state_dict(checkpoint, strict=True)
    return network.eval()


def converted_network() -> torch.nn.Module:
    import timm

    network = timm.create_model(TIMM_NAME, pretrained=False)
    network.load_state_dict(lite0_imagenet_state_dict(), strict=True)  # every key, nothing left over
    return network.eval()


@pytest.mark.parametrize(("image_size", "height", "width"), [(224, 224, 224), (None, 250, 333)])
def test_converted_timm_network_gives_the_reference_imagenet_logits(package_checkpoint, image_size, height, width):
    torch.manual_seed(0)
    images = torch.randn(2, 3, height, width)
    with torch.no_grad():
        expected = reference_network(package_checkpoint, image_size)(images)
        actual = converted_network()(images)
    assert expected.shape == (2, 1000)
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-4)


def test_conversion_renames_without_changing_any_tensor(package_checkpoint):
    converted = convert_lite0_state_dict(package_checkpoint)
    assert len(converted) == len(package_checkpoint)
    assert torch.equal(converted["blocks.0.0.conv_dw.weight"], package_checkpoint["_blocks.0._depthwise_conv.weight"])
    assert torch.equal(converted["blocks.6.0.conv_pwl.weight"], package_checkpoint["_blocks.15._project_conv.weight"])
    assert torch.equal(converted["classifier.bias"], package_checkpoint["_fc.bias"])


def test_pretrained_lite0_unet_loads_the_converted_encoder_offline(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # proves no hub is involved
    model = create_model("unet_efficientnet_lite0", pretrained=True)
    converted = lite0_imagenet_state_dict()
    encoder_state = model.encoder.net.state_dict()
    assert encoder_state.keys() <= converted.keys()
    assert all(torch.equal(encoder_state[key], converted[key]) for key in encoder_state)
    # The ImageNet-only layers (head conv, classifier) are dropped from the encoder.
    assert "classifier.weight" not in encoder_state and "conv_head.weight" not in encoder_state


def test_the_package_checkpoint_also_works_as_a_weights_file():
    model = create_model("unet_efficientnet_lite0", weights=package_checkpoint_path())
    torch.testing.assert_close(
        model.encoder.net.conv_stem.weight, lite0_imagenet_state_dict()["conv_stem.weight"], rtol=0, atol=0
    )
