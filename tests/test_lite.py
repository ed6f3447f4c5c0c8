"""The offline EfficientNet-Lite0/1/2 weights: the key conversion is proven against the
packages' own reference implementation (efficientnet-lite-pytorch, in the dev extra:
imported, not skipped, so a broken dev install fails here instead of hiding)."""

from __future__ import annotations

import efficientnet_lite_pytorch as reference_package
import pytest
import torch

from petseg.errors import PetsegError
from petseg.models import create_model
from petseg.models.lite import (
    VARIANTS,
    convert_lite_state_dict,
    lite_imagenet_state_dict,
    lite_variant,
    package_checkpoint_path,
)

LITE_NAMES = sorted(VARIANTS)  # tf_efficientnet_lite0, 1, 2


def package_checkpoint(timm_name: str) -> dict:
    return torch.load(package_checkpoint_path(VARIANTS[timm_name]), map_location="cpu", weights_only=True)


def reference_network(timm_name: str, image_size) -> torch.nn.Module:
    # image_size=None gives the reference 'SAME' padding computed per input, like timm's Conv2dSame.
    network = reference_package.EfficientNet.from_name(VARIANTS[timm_name].reference_name, image_size=image_size)
    network.load_state_dict(package_checkpoint(timm_name), strict=True)
    return network.eval()


def converted_network(timm_name: str) -> torch.nn.Module:
    import timm

    network = timm.create_model(timm_name, pretrained=False)
    network.load_state_dict(lite_imagenet_state_dict(VARIANTS[timm_name]), strict=True)  # every key, none left over
    return network.eval()


@pytest.mark.parametrize("timm_name", LITE_NAMES)
@pytest.mark.parametrize(("fixed_size", "height", "width"), [(True, 224, 224), (False, 250, 333)])
def test_converted_timm_network_gives_the_reference_imagenet_logits(timm_name, fixed_size, height, width):
    torch.manual_seed(0)
    images = torch.randn(2, 3, height, width)
    with torch.no_grad():
        expected = reference_network(timm_name, height if fixed_size else None)(images)
        actual = converted_network(timm_name)(images)
    assert expected.shape == (2, 1000)
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("timm_name", LITE_NAMES)
def test_stage_depths_are_timms(timm_name):
    import timm

    network = timm.create_model(timm_name, pretrained=False)
    assert tuple(len(stage) for stage in network.blocks) == VARIANTS[timm_name].stage_depths


@pytest.mark.parametrize("timm_name", LITE_NAMES)
def test_conversion_renames_without_changing_any_tensor(timm_name):
    checkpoint = package_checkpoint(timm_name)
    converted = convert_lite_state_dict(checkpoint, VARIANTS[timm_name])
    last_block = max(int(key.split(".")[1]) for key in checkpoint if key.startswith("_blocks."))
    assert len(converted) == len(checkpoint)
    assert torch.equal(converted["blocks.0.0.conv_dw.weight"], checkpoint["_blocks.0._depthwise_conv.weight"])
    assert torch.equal(converted["blocks.6.0.conv_pwl.weight"], checkpoint[f"_blocks.{last_block}._project_conv.weight"])
    assert torch.equal(converted["classifier.bias"], checkpoint["_fc.bias"])


@pytest.mark.parametrize("timm_name", LITE_NAMES)
def test_pretrained_lite_unet_loads_the_converted_encoder_offline(monkeypatch, timm_name):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # proves no hub is involved
    model = create_model(f"unet_{timm_name[3:]}", pretrained=True)
    converted = lite_imagenet_state_dict(VARIANTS[timm_name])
    encoder_state = model.encoder.net.state_dict()
    assert encoder_state.keys() <= converted.keys()
    assert all(torch.equal(encoder_state[key], converted[key]) for key in encoder_state)
    # The ImageNet-only layers (head conv, classifier) are dropped from the encoder.
    assert "classifier.weight" not in encoder_state and "conv_head.weight" not in encoder_state


@pytest.mark.parametrize("timm_name", LITE_NAMES)
def test_the_package_checkpoint_also_works_as_a_weights_file(timm_name):
    variant = VARIANTS[timm_name]
    model = create_model(f"unet_efficientnet_lite{variant.number}", weights=package_checkpoint_path(variant))
    torch.testing.assert_close(
        model.encoder.net.conv_stem.weight, lite_imagenet_state_dict(variant)["conv_stem.weight"], rtol=0, atol=0
    )


def test_a_lite_checkpoint_for_another_variant_or_encoder_is_one_clear_error():
    lite2_file = package_checkpoint_path(VARIANTS["tf_efficientnet_lite2"])
    with pytest.raises(PetsegError, match="Lite0 has only 16 blocks"):
        create_model("unet_efficientnet_lite0", weights=lite2_file)
    with pytest.raises(PetsegError, match="does not fit this encoder"):  # same blocks, wider layers
        create_model("unet_efficientnet_lite1", weights=lite2_file)
    with pytest.raises(PetsegError, match="fits only the unet_efficientnet_lite models"):
        create_model("unet_mobilenetv2", weights=lite2_file)


def test_only_the_lite_encoders_have_a_variant():
    assert lite_variant("tf_efficientnet_lite1").number == 1
    assert lite_variant("mobilenetv2_100") is None
