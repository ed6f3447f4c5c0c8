"""Model files: one .safetensors file, weights plus the typed config in its metadata.

No pickle anywhere: the metadata key CONFIG_METADATA_KEY holds `ModelConfig.to_json()`, so
`load_model(path)` rebuilds the network with no flags and cannot run foreign code.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from petseg.atomic import atomic_path
from petseg.errors import PetsegError, clipped, needs_train_install, quoted
from petseg.run_dir import best_model_file
from petseg.models.config import CONFIG_METADATA_KEY, ModelConfig
from petseg.models.file_limits import check_header_limits

# The model that ships inside the package, as weights (the source, for PyTorch) and as
# ONNX (scripts/export_bundled_onnx.py): the default of cutout, serve and Segmenter.load().
BUNDLED_MODEL_NAME = "petseg-pets.safetensors"
BUNDLED_SUFFIXES = (".safetensors", ".onnx")
WEIGHTS_FOLDER = Path(__file__).resolve().parents[1] / "weights"
MODEL_SUFFIXES = (".safetensors", ".onnx")


# What a petseg model's state dict holds: its three parts' parameters and buffers.
MODEL_PARTS = ("encoder.", "decoder.", "head.")
FLOAT_DTYPES = {"F16", "BF16", "F32", "F64"}
DTYPE_BYTES = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8, "I64": 8}


def bundled_model_path(suffix: str = ".safetensors") -> Path:
    """The bundled model's .safetensors or .onnx file, or a clear error when this install has none."""
    if suffix not in BUNDLED_SUFFIXES:
        raise ValueError(f"the bundled model comes as {' or '.join(BUNDLED_SUFFIXES)}, not {suffix}")
    path = (WEIGHTS_FOLDER / BUNDLED_MODEL_NAME).with_suffix(suffix)
    if not path.is_file():
        raise PetsegError(
            f"no bundled model in this install ({path} is missing)",
            advice="give {model} a run folder, a .safetensors or an .onnx file",
        )
    return path


def resolve_model_path(model: str | Path | None) -> Path:
    """A run folder (its best model file), a model file, or None for the bundled model."""
    if model is None:
        return bundled_model_path()
    if not isinstance(model, (str, os.PathLike)):
        raise PetsegError(f"a model is a run folder or a model file's path, not {quoted(model)}")
    if not os.fspath(model):  # Path("") is the current folder: an unset variable would pick it
        raise PetsegError("the model's path is empty (give a run folder, a .safetensors or an .onnx file)")
    path = Path(model)
    if path.is_dir():
        return best_model_file(path)  # a training run folder: its best epoch's model
    if not path.is_file():
        raise PetsegError(f"{path}: model not found (give a run folder, a .safetensors or an .onnx file)")
    if path.suffix.lower() not in MODEL_SUFFIXES:
        raise PetsegError(f"{path}: model files end in .safetensors or .onnx")
    return path


@needs_train_install("save_model")
def save_model(model, path: str | Path, *, dtype=None) -> Path:
    """Write `model`'s weights and config to `path` atomically (temp file + rename).

    `dtype` (e.g. torch.float16) stores floating-point tensors smaller; load_model casts
    them back to the model's own dtype. Replaces an existing file: refusing to overwrite
    without --force is the CLI's job.
    """
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise PetsegError(f"model file {path} must end in .safetensors")
    config = getattr(model, "config", None)
    if not isinstance(config, ModelConfig):
        raise PetsegError("save_model needs a petseg model (one with a ModelConfig in .config)")
    tensors = {}
    for key, value in model.state_dict().items():
        value = value.detach().cpu()
        if dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        tensors[key] = value.contiguous()
    with atomic_path(path) as temporary:
        try:
            save_file(tensors, temporary, metadata={CONFIG_METADATA_KEY: config.to_json()})
        except SafetensorError as error:  # its I/O errors (a full disk) are not OSErrors: make them so
            raise OSError(str(error).removeprefix("Error while serializing: ")) from None
    return path


def read_config(path: str | Path) -> ModelConfig:
    """The config stored in a model file, without loading its weights (nor PyTorch).

    The names and types of its tensors are checked from the file's header too, so that
    a file of someone else's tensors is refused before PyTorch is even imported.
    """
    return read_header(path)[0]


def read_header(path: str | Path) -> tuple[ModelConfig, int]:
    """read_config's config, and the bytes of all the file's tensors (from the header alone)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise PetsegError(f"model file {path} does not exist")
    try:
        check_header_limits(path)
        with safe_open(str(path), framework="numpy") as handle:  # the header only
            metadata = handle.metadata() or {}
            names = handle.keys()
            slices = [(name, handle.get_slice(name)) for name in names]
            tensors = {name: tensor.get_dtype() for name, tensor in slices}
            stored_bytes = sum(math.prod(tensor.get_shape()) * DTYPE_BYTES.get(tensor.get_dtype(), 8)
                               for _, tensor in slices)
    except PetsegError:
        raise
    except Exception as error:  # not a safetensors file at all
        raise PetsegError(f"model file {path} is not a .safetensors file: {str(error).splitlines()[0]}") from None
    if CONFIG_METADATA_KEY not in metadata:
        raise PetsegError(f"model file {path} has no {CONFIG_METADATA_KEY} metadata: it was not written by petseg save_model")
    try:
        config = ModelConfig.from_json(metadata[CONFIG_METADATA_KEY])
    except (ValueError, TypeError) as error:
        raise PetsegError(f"model file {path} has an unreadable {CONFIG_METADATA_KEY}: {error}") from None
    check_tensor_names(path, tensors)
    return config, stored_bytes


def check_tensor_names(path: Path, tensors: dict[str, str]) -> None:
    """Every tensor belongs to a petseg model's encoder, decoder or head, as floats
    (BatchNorm's step counters as int64); whether they fit the model, loading tells."""
    for name, dtype in tensors.items():
        counter = name.endswith(".num_batches_tracked") and dtype == "I64"
        if not name.startswith(MODEL_PARTS) or not (dtype in FLOAT_DTYPES or counter):
            raise PetsegError(f"model file {path}: tensor {clipped(name)!r} ({dtype}) is not part of a petseg model")
    if not any(name.startswith("head.") for name in tensors):
        raise PetsegError(f"model file {path} has no head weights: not a petseg model")


@needs_train_install("load_model")
def load_model(path: str | Path, map_location: str = "cpu"):
    """Rebuild the model stored in `path` and load its weights; returns it in eval mode."""
    config, stored_bytes = read_header(path)  # checked before torch is even imported

    from safetensors.torch import load_file

    from petseg.models.build_budget import build_within
    from petseg.models.pretrained import load_state_dict_exactly
    from petseg.models.registry import create_model

    def build():
        return create_model(config.architecture, num_classes=config.num_classes, image_size=config.image_size,
                            **config.options)

    try:
        model = build_within(stored_bytes, build, f"its architecture {clipped(config.architecture)!r}")
    except PetsegError as error:  # an unknown architecture or option, or too big: say which file asked for it
        raise PetsegError(f"model file {path}: {error}") from None
    load_state_dict_exactly(model, load_file(str(path), device="cpu"), path, "model")
    model.config = config  # the file's own mean/std/labels/version, exactly as saved
    return model.to(map_location).eval()
