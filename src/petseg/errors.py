"""Errors a user can cause and fix. The CLI prints them as one line, no traceback."""


class PetsegError(Exception):
    """A user-facing error: the message names the file or option and what is wrong."""

    exit_code = 2


class ImageError(PetsegError):
    """An image that cannot be decoded, or one that breaks a limit."""


class LabelError(PetsegError):
    """A mask whose values are not valid labels."""


class NotAnImageError(ImageError):
    """Content that is not an image at all (empty, text, unknown format)."""


# The light install (`pip install petseg`) cuts out photos on ONNX Runtime; these
# modules come only with the training install, pyproject's [train] extra.
TRAIN_INSTALL = "pip install 'petseg[train]'"
_TRAIN_MODULES = {
    "torch": "PyTorch",
    "torchvision": "PyTorch",
    "timm": "timm",
    "onnx": "onnx",
    "onnxscript": "onnxscript",
    "matplotlib": "matplotlib",
    "tensorboard": "TensorBoard",
}


def missing_train_extra(error: ModuleNotFoundError, what: str) -> PetsegError | None:
    """"<what> needs PyTorch: pip install 'petseg[train]'" when `error` is a [train] module, else None."""
    package = _TRAIN_MODULES.get((error.name or "").partition(".")[0])
    return None if package is None else PetsegError(f"{what} needs {package}: {TRAIN_INSTALL}")
