"""Export a petseg model to ONNX, and prove the export computes the same probabilities.

The exported graph takes normalised images (N, 3, H, W) named "images" and returns
softmax probabilities named "probabilities": softmax is part of the graph so both
backends hand the same thing to the cutout code. Batch, height and width are dynamic.
The model's config (image size, mean, std, labels) travels in the ONNX metadata, so an
.onnx file is as self-describing as a .safetensors one.

`quantize_int8` turns a float export into a statically quantized one (ONNX Runtime,
QDQ format, per-channel weights), its activation ranges calibrated on real photos
preprocessed exactly as a cutout preprocesses them. By default only the decoder and
head: on the bundled model, int8 in the EfficientNet encoder (depthwise convolutions
above all) cost 0.05 fg IoU on the sample's test list, while the decoder, most of the
compute at 256 px, quantizes with no measurable loss (README, "int8").
"""

from __future__ import annotations

import io
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from petseg.errors import PetsegError
from petseg.atomic import write_bytes_atomic
from petseg.inference.backends import INPUT_NAME, OUTPUT_NAME, OnnxBackend
from petseg.models.config import CONFIG_METADATA_KEY

PARITY_TOLERANCE = 1e-4
OPSET = 18
# Calibration photos are spread over the folder; a few dozen fix the activation ranges.
CALIBRATION_PHOTOS = 32
# Written into a quantized model's metadata beside the config.
PRECISION_METADATA_KEY = "petseg_precision"
# What `quantize_int8` quantizes: nodes of the exported graph whose names hold this stay float.
INT8_SCOPES = {"decoder": "/encoder/", "all": None}


def _with_softmax(model):
    import torch

    class WithSoftmax(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, images):
            return torch.softmax(self.inner(images), dim=1)

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
    calibration: str | Path | None = None, int8_scope: str = "decoder",
) -> ExportReport:
    """Write `source` to `path` as ONNX, only once it is verified.

    source: a petseg model (exported, then checked against PyTorch) or float ONNX bytes.
    calibration: a folder of photos; quantizes the export to int8 (`int8_scope`, see
    quantize_int8), calibrated on them.
    """
    path = Path(path)
    if path.exists() and not force:
        raise PetsegError(f"{path}: already exists (use --force to overwrite)")
    if isinstance(source, bytes):
        data, report = source, ExportReport(None)
    else:
        data, difference = verified_onnx(source, tolerance=tolerance, label=str(path))
        report = ExportReport(difference)
    if calibration is not None:
        batches = calibration_batches(calibration, OnnxBackend(data).config)
        data, change = quantize_int8(data, batches, scope=int8_scope)
        report = ExportReport(report.parity_difference, change)
    write_bytes_atomic(path, data)
    return report


def calibration_batches(folder: str | Path, config, limit: int = CALIBRATION_PHOTOS) -> list[np.ndarray]:
    """Up to `limit` photos spread over `folder` (subfolders included), each a (1, 3, S, S)
    batch preprocessed exactly as a cutout does; unreadable files are passed over."""
    from petseg.data.decode import load_rgb
    from petseg.inference.files import IMAGE_SUFFIXES
    from petseg.inference.segmenter import letterbox_batch

    folder = Path(folder)
    if not folder.is_dir():
        raise PetsegError(f"{folder}: calibration photos must be a folder")
    files = sorted(
        path for path in folder.rglob("*")
        if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".") and path.is_file()
    )
    batches = []
    for path in files[:: max(1, len(files) // limit)][:limit]:
        try:
            batches.append(letterbox_batch([load_rgb(path)], config)[0])
        except PetsegError:
            continue  # one bad photo in a calibration folder does not matter; the others calibrate
    if not batches:
        raise PetsegError(f"{folder}: no readable photos to calibrate int8 on")
    return batches


def quantize_int8(float_model: bytes, batches: list[np.ndarray], *, scope: str = "decoder") -> tuple[bytes, float]:
    """(int8 ONNX bytes, largest |p_float - p_int8| over the calibration batches).

    scope: "decoder" quantizes the decoder and head and keeps the encoder in float;
    "all" quantizes every convolution (smaller and faster, less accurate).
    """
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if scope not in INT8_SCOPES:
        raise PetsegError(f"int8 scope {scope!r} is not one of {', '.join(INT8_SCOPES)}")

    class Photos(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(batches)

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    metadata = {prop.key: prop.value for prop in onnx.load_from_string(float_model).metadata_props}
    with tempfile.TemporaryDirectory(prefix="petseg-int8-") as directory:
        source, prepared, target = (Path(directory) / name for name in ("float.onnx", "prepared.onnx", "int8.onnx"))
        source.write_bytes(float_model)
        # Shape inference and graph fusions first, as ONNX Runtime recommends before quantizing
        # (the symbolic pass cannot follow the dynamic height and width through the decoder).
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        float_part = INT8_SCOPES[scope]
        keep_float = [node.name for node in onnx.load(str(prepared)).graph.node if float_part and float_part in node.name]
        quantize_static(
            str(prepared), str(target), Photos(), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=keep_float,
        )
        graph = onnx.load(str(target))
    onnx.helper.set_model_props(graph, {**metadata, PRECISION_METADATA_KEY: f"int8 ({scope})"})
    quantized = graph.SerializeToString()
    reference, candidate = OnnxBackend(float_model), OnnxBackend(quantized)
    change = max(float(np.abs(reference(batch) - candidate(batch)).max()) for batch in batches)
    return quantized, change
