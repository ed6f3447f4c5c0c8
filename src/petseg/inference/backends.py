"""The two engines that turn a normalised batch into class probabilities.

Both take float32 (N, 3, S, S) numpy and return float32 (N, C, S, S) probabilities,
so everything around them (letterboxing, alpha, files) is shared.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from petseg.errors import ModelError, PetsegError, quoted
from petseg.inference.onnx_memory import MEMORY_VARIABLE, arena_bytes, images_per_run, is_out_of_memory, session_options
from petseg.models.config import CONFIG_METADATA_KEY, ModelConfig

INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"


def execution_providers() -> list[str]:
    """CUDA first when this onnxruntime build offers it (onnxruntime-gpu), the CPU always."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    return [provider for provider in ("CUDAExecutionProvider", "CPUExecutionProvider") if provider in available]


class TorchBackend:
    name = "torch"

    def __init__(self, model, device: str | None = None):
        import torch

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = model.eval().to(device)
        self.device = device
        self.config: ModelConfig = model.config

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            logits = self.model(torch.from_numpy(batch).to(self.device))
            return torch.softmax(logits.float(), dim=1).cpu().numpy()


class OnnxBackend:
    """ONNX Runtime running a model exported by `petseg export` (softmax included).

    On the GPU when onnxruntime-gpu and a CUDA device are there, else on the CPU.
    """

    name = "onnx"

    def __init__(self, model: str | Path | bytes, *, threads: int | None = None):
        import onnxruntime

        options = session_options(threads)
        label = "<exported model>" if isinstance(model, bytes) else str(model)
        self.label = label
        source = model if isinstance(model, bytes) else str(model)
        try:
            self.session = onnxruntime.InferenceSession(source, options, providers=execution_providers())
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
        check_onnx_model(self.session, self.config, label)
        self.input_name = INPUT_NAME

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        step = images_per_run(*batch.shape[2:])
        parts = [self.run(batch[start : start + step]) for start in range(0, len(batch), step)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def run(self, batch: np.ndarray) -> np.ndarray:
        failure = None
        try:
            [output] = self.session.run([OUTPUT_NAME], {self.input_name: batch})
        except Exception as error:  # onnxruntime's errors are untyped
            failure = run_failure(error, self.label, *batch.shape[:1], *batch.shape[2:])
        if failure is not None:  # raised outside the except: the failed run's frames go now
            raise failure
        # Every run, not only the load check's blank one: a graph may answer that batch
        # rightly and a bigger one (more images, larger photos) with another shape.
        check_output(output, self.label, len(batch), *batch.shape[2:], self.config.num_classes)
        # A copy: the answer would otherwise stay in the capped arena until the whole batch is joined.
        return output.copy()


def batch_words(images: int, height: int, width: int) -> str:
    return f"a batch of {images} {width}x{height} image{'s' * (images != 1)}"


def check_output(output, label: str, images: int, height: int, width: int, num_classes: int) -> None:
    """Refuse a session's answer that is not float32 (images, num_classes, height, width).

    Shapes and the dtype only (no pass over the values): it runs on every batch. Wrong
    shapes otherwise surface as numpy's broadcast or index errors, or, for a smaller map
    of the right rank, as wrong cutouts.
    """
    expected = (images, num_classes, height, width)
    shape = getattr(output, "shape", None)
    if not isinstance(output, np.ndarray) or shape != expected:
        got = f"an output of shape {quoted(shape)}" if isinstance(output, np.ndarray) else f"a {type(output).__name__}"
        raise ModelError(f"{label}: the ONNX model answers {batch_words(images, height, width)} with {got}, "
                          f"not {expected}")
    if output.dtype != np.float32:
        raise ModelError(f"{label}: the ONNX model answers {batch_words(images, height, width)} with "
                          f"{quoted(str(output.dtype))} values, not float32")


def run_failure(error: Exception, label: str, images: int, height: int, width: int) -> ModelError:
    """How a failed session run reads: the capped arena's refusal, or ONNX Runtime's first line."""
    batch = batch_words(images, height, width)
    if is_out_of_memory(error):
        return ModelError(f"{label}: the ONNX model needs more than the {arena_bytes() // 2**20} MB petseg lets "
                           f"ONNX Runtime use on {batch}", advice=f"a model this big needs {MEMORY_VARIABLE} set higher")
    return ModelError(f"{label}: the ONNX model fails on {batch} ({str(error).splitlines()[0][:200]})")


# The blank images' size for graphs whose height and width are free (petseg exports them so).
CHECK_SIZE = 64
# Softmax outputs lie in [0, 1] and sum to 1 over the classes. An int8 model quantizes its
# probabilities to steps of 1/255, so its sums are off by a step or two (0.008 seen on the
# bundled model); anything that is not a softmax misses by far more than this.
PROBABILITY_TOLERANCE = 0.02


def check_onnx_model(session, config: ModelConfig, label: str) -> None:
    """Refuse an ONNX graph that does not match its petseg metadata, before its first use.

    The metadata can be copied onto any graph: the graph must take one float (N, 3, H, W)
    input named "images" and give one (N, num_classes, H, W) output named
    "probabilities", and on a batch of two blank images of the model's size it must answer
    each with probabilities (finite, in [0, 1], summing to 1 over the classes): cutouts
    send batches, and a graph with a fixed batch of one failed on the second photo.
    """
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if [node.name for node in inputs] != [INPUT_NAME] or [node.name for node in outputs] != [OUTPUT_NAME]:
        raise PetsegError(
            f"{label}: ONNX graph has inputs {[node.name for node in inputs][:4]} and outputs "
            f"{[node.name for node in outputs][:4]}, not one {INPUT_NAME!r} and one {OUTPUT_NAME!r} as `petseg export` writes"
        )
    expected = {INPUT_NAME: (inputs[0], 3), OUTPUT_NAME: (outputs[0], config.num_classes)}
    for name, (node, channels) in expected.items():
        shape = node.shape  # a dimension may be symbolic (a name or None); the blank run below checks it
        if node.type != "tensor(float)" or len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != channels):
            raise PetsegError(
                f"{label}: ONNX {name} is {node.type} of shape {shape}, expected float (batch, {channels}, height, width)"
                + (f" for the {config.num_classes} classes its config names" if name == OUTPUT_NAME else "")
            )
    # The graph's own size where it fixes one; else a small one: the check itself must not
    # allocate what a hostile graph's intermediate maps would take at 2048 px.
    height, width = inputs[0].shape[2:]
    size = height if isinstance(height, int) and height == width else min(config.image_size, CHECK_SIZE)
    blank = np.zeros((2, 3, size, size), np.float32)
    failure = None
    try:
        [probabilities] = session.run([OUTPUT_NAME], {INPUT_NAME: blank})
    except Exception as error:  # onnxruntime's errors are untyped
        failure = run_failure(error, label, 2, size, size)
    if failure is not None:  # raised outside the except: the failed run's frames go now
        raise failure
    check_output(probabilities, label, 2, size, size, config.num_classes)
    sums = probabilities.sum(axis=1)
    if not (np.isfinite(probabilities).all() and probabilities.min() >= -PROBABILITY_TOLERANCE
            and probabilities.max() <= 1 + PROBABILITY_TOLERANCE
            and np.abs(sums - 1).max() <= PROBABILITY_TOLERANCE):  # fmt: skip
        raise PetsegError(f"{label}: ONNX model's output is not class probabilities (softmax); export it with `petseg export`")
