"""int8 models: ONNX Runtime static quantization, calibrated on real photos.

QDQ format with per-channel int8 weights and uint8 activations, whose ranges come from
photos preprocessed exactly as a cutout preprocesses them. By default only the decoder
and head: on the bundled model, int8 in the EfficientNet encoder (depthwise
convolutions above all) cost 0.05 fg IoU on the sample's test list, while the decoder,
most of the compute at 256 px, quantizes with no measurable loss (README, "int8").
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from petseg.errors import PetsegError, quoted
from petseg.inference.backends import INPUT_NAME, OnnxBackend

# Calibration photos are spread over the folder; a few dozen fix the activation ranges.
CALIBRATION_PHOTOS = 32
# Written into a quantized model's metadata beside the config.
PRECISION_METADATA_KEY = "petseg_precision"
# What `quantize_int8` quantizes: nodes of the exported graph whose names hold this stay float.
INT8_SCOPES = {"decoder": "/encoder/", "all": None}
# The head (a 1x1 convolution to the class logits) and the softmax after it stay float in
# every scope: their outputs are the probabilities that soft alpha shows as they are, and
# in uint8 (steps of 1/255 and coarser) they moved the bundled model's soft-alpha figures
# by up to 0.006; in float the two cost next to nothing. The softmax's nodes are the
# graph's top level ("/Exp", "/Div", ...: no module in their names), and so is an older
# export's single "/Softmax".
FLOAT_OUTPUT_NODES = ("/head/",)


def stays_float(node_name: str, float_part: str | None) -> bool:
    """Whether `quantize_int8` leaves a node of the exported graph in float."""
    top_level = node_name.count("/") == 1
    return top_level or any(part in node_name for part in FLOAT_OUTPUT_NODES) or bool(float_part and float_part in node_name)


def check_int8_scope(scope: str) -> None:
    if scope not in INT8_SCOPES:
        raise PetsegError(f"int8 scope {quoted(scope)} is not one of {', '.join(INT8_SCOPES)}")


def check_calibration_folder(folder: str | Path) -> None:
    if not Path(folder).is_dir():
        raise PetsegError(f"{folder}: calibration photos must be a folder")


def calibration_batches(folder: str | Path, config, limit: int = CALIBRATION_PHOTOS) -> list[np.ndarray]:
    """Up to `limit` photos spread over `folder` (subfolders included), each a (1, 3, S, S)
    batch preprocessed exactly as a cutout does; unreadable files are passed over."""
    from petseg.data.decode import load_rgb, readable_suffixes
    from petseg.inference.segmenter import letterbox_batch

    folder = Path(folder)
    check_calibration_folder(folder)
    suffixes = readable_suffixes()
    files = sorted(
        path for path in folder.rglob("*")
        if path.suffix.lower() in suffixes and not path.name.startswith(".") and path.is_file()
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

    check_int8_scope(scope)

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
        keep_float = [node.name for node in onnx.load(str(prepared)).graph.node if stays_float(node.name, float_part)]
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
