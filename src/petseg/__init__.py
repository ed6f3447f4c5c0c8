"""petseg: train U-Net segmentation models and cut pets out of photos.

The public API is imported lazily so that `import petseg` (and `petseg --help`)
stays fast: torch, timm and onnxruntime load only when a function needs them.
"""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY_EXPORTS = {
    "create_model": "petseg.models",
    "load_model": "petseg.models",
    "save_model": "petseg.models",
    "list_models": "petseg.models",
    "Segmenter": "petseg.inference",
    "remove_background": "petseg.inference",
}

__all__ = ["__version__", *_LAZY_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _LAZY_EXPORTS:
        return getattr(import_module(_LAZY_EXPORTS[name]), name)
    raise AttributeError(f"module 'petseg' has no attribute {name!r}")
