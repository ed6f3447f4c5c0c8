"""The two engines that turn a normalised batch into class probabilities.

Both take float32 (N, 3, S, S) numpy and return float32 (N, C, S, S) probabilities,
so everything around them (letterboxing, alpha, files) is shared.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from petseg.errors import PetsegError
from petseg.models.config import CONFIG_METADATA_KEY, ModelConfig

INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"


class TorchBackend:
    name = "torch"

    def __init__(self, model, device: str = "cpu"):
        self.model = model.eval().to(device)
        self.device = device
        self.config: ModelConfig = model.config

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            logits = self.model(torch.from_numpy(batch).to(self.device))
            return torch.softmax(logits.float(), dim=1).cpu().numpy()


class OnnxBackend:
    """ONNX Runtime on the CPU, running a model exported by `petseg export` (softmax included)."""

    name = "onnx"

    def __init__(self, model: str | Path | bytes, *, threads: int | None = None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        label = "<exported model>" if isinstance(model, bytes) else str(model)
        source = model if isinstance(model, bytes) else str(model)
        try:
            self.session = onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own untyped errors for bad files
            raise PetsegError(f"{label}: not a usable ONNX model ({str(error).splitlines()[0][:200]})") from None
        metadata = self.session.get_modelmeta().custom_metadata_map
        if CONFIG_METADATA_KEY not in metadata:
            raise PetsegError(f"{label}: ONNX model has no petseg config; export it with `petseg export`")
        try:
            self.config = ModelConfig.from_json(metadata[CONFIG_METADATA_KEY])
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            reason = (str(error).splitlines() or [type(error).__name__])[0][:200]
            raise PetsegError(f"{label}: unreadable petseg config ({reason})") from None
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]
