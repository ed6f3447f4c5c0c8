"""Export a petseg model to ONNX, and prove the export computes the same probabilities.

The exported graph takes normalised images (N, 3, H, W) named "images" and returns
softmax probabilities named "probabilities": softmax is part of the graph so both
backends hand the same thing to the cutout code. Batch, height and width are dynamic.
The model's config (image size, mean, std, labels) travels in the ONNX metadata, so an
.onnx file is as self-describing as a .safetensors one.
With calibration photos, `export_and_verify` also quantizes to int8 (quantize.py).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from petseg.errors import PetsegError
from petseg.atomic import refuse_to_overwrite, remove_stale_temporaries, write_bytes_atomic
from petseg.inference.backends import INPUT_NAME, OUTPUT_NAME, OnnxBackend
from petseg.models.config import CONFIG_METADATA_KEY

PARITY_TOLERANCE = 1e-4
OPSET = 18


def _with_softmax(model):
    import torch

    class WithSoftmax(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, images):
            # softmax written out: ONNX Runtime runs a Softmax node over the class axis
            # (not the last) by transposing around it, 2.4 ms at 3 x 256 x 256 on one CPU
            # core, where these reduce and element-wise nodes take 0.5 ms. Same numbers.
            logits = self.inner(images)
            exponentials = torch.exp(logits - logits.amax(dim=1, keepdim=True))
            return exponentials / exponentials.sum(dim=1, keepdim=True)

    return WithSoftmax(model).eval()


def export_onnx(model) -> bytes:
    """Serialise a petseg model (anything with .config) to ONNX bytes."""
    import onnx
    import torch

    size = model.config.image_size
    example = torch.zeros(2, 3, size, size)
    dynamic = {0: "batch", 2: "height", 3: "width"}
    buffer = io.BytesIO()
    # The TorchScript exporter traces unet_mobilenetv3 in 0.6 s where the torch.export
    # based one (dynamo=True) takes 12 s here; it is deprecated, hence the filter.
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _with_softmax(model.eval()),
            (example,),
            buffer,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: dynamic, OUTPUT_NAME: dynamic},
            opset_version=OPSET,
            dynamo=False,
        )
    graph = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(graph, {CONFIG_METADATA_KEY: model.config.to_json()})
    return graph.SerializeToString()


def parity_inputs(image_size: int, seed: int = 0) -> list[np.ndarray]:
    """Random normalised batches: the model's own size at batch 2, and an odd, non-square one."""
    rng = np.random.default_rng(seed)
    odd = (image_size - image_size // 4 + 3, image_size + 5)
    return [
        rng.standard_normal((2, 3, image_size, image_size), dtype=np.float32),
        rng.standard_normal((1, 3, *odd), dtype=np.float32),
    ]


def max_probability_difference(model, onnx_model: bytes | str | Path, *, seed: int = 0) -> float:
    """Largest |p_torch - p_onnx| over the parity inputs."""
    import torch

    backend = OnnxBackend(onnx_model)
    reference = _with_softmax(model.eval())
    worst = 0.0
    for batch in parity_inputs(model.config.image_size, seed):
        with torch.inference_mode():
            expected = reference(torch.from_numpy(batch)).numpy()
        worst = max(worst, float(np.abs(backend(batch) - expected).max()))
    return worst


@dataclass(frozen=True)
class ExportReport:
    parity_difference: float | None  # largest |p_torch - p_onnx| of the float export
    int8_change: float | None = None  # largest |p_float - p_int8| on the calibration photos
    float16_change: float | None = None  # largest |p - p with float16 weights| (calibration photos, else parity inputs)


def verified_onnx(model, *, tolerance: float = PARITY_TOLERANCE, label: str = "ONNX export") -> tuple[bytes, float]:
    """(ONNX bytes, parity difference), or an error when the export computes something else."""
    data = export_onnx(model)
    difference = max_probability_difference(model, data)
    if not difference < tolerance:
        raise PetsegError(
            f"{label}: ONNX export differs from PyTorch by {difference:.2e} in probability "
            f"(limit {tolerance:.0e}); not written"
        )
    return data, difference


def export_and_verify(
    source, path: str | Path, *, force: bool = False, tolerance: float = PARITY_TOLERANCE,
    calibration: str | Path | None = None, int8_scope: str = "decoder", float16_weights: bool = False,
) -> ExportReport:
    """Write `source` to `path` as ONNX, only once it is verified.

    source: a petseg model (exported, then checked against PyTorch) or float ONNX bytes.
    calibration: a folder of photos; quantizes the export to int8 (`int8_scope`, see
    quantize_int8), calibrated on them.
    float16_weights: store the float weights in float16, computing in float32 still
    (float16_weights.py): half the size of a float file.
    """
    path = Path(path)
    if path.is_dir():
        raise PetsegError(f"{path}: is a folder; name the .onnx file to write")
    refuse_to_overwrite(path, force)
    if calibration is not None:
        from petseg.inference.quantize import check_calibration_folder, check_int8_scope

        # Before any export work: they were refused after the export and its parity check, 7 s in.
        check_int8_scope(int8_scope)
        check_calibration_folder(calibration)
    remove_stale_temporaries(path.parent)  # what a killed export left beside the file
    if isinstance(source, bytes):
        data, report = source, ExportReport(None)
    else:
        data, difference = verified_onnx(source, tolerance=tolerance, label=str(path))
        report = ExportReport(difference)
    batches = None
    if calibration is not None:
        from petseg.inference.quantize import calibration_batches, quantize_int8

        batches = calibration_batches(calibration, OnnxBackend(data).config)
        data, change = quantize_int8(data, batches, scope=int8_scope)
        report = replace(report, int8_change=change)
    if float16_weights:
        from petseg.inference.float16_weights import store_weights_float16

        before, data = OnnxBackend(data), store_weights_float16(data)
        after = OnnxBackend(data)
        batches = batches or parity_inputs(before.config.image_size)
        change = max(float(np.abs(before(batch) - after(batch)).max()) for batch in batches)
        report = replace(report, float16_change=change)
    try:
        write_bytes_atomic(path, data)
    except OSError as error:  # a file where a folder should be, /proc, a full disk
        raise PetsegError(f"{path}: cannot write the model ({error.strerror or error})") from None
    return report
