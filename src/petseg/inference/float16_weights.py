"""ONNX files with float16 weights that still compute in float32.

Each large float32 weight is stored in float16 and fed through a Cast back to float32.
ONNX Runtime folds those casts into float32 constants when it loads the model (constant
folding, on at its default optimisation level), so a session runs exactly the float32
graph it would have run, with weights rounded to float16 (about 3 significant digits;
the bundled .safetensors file already stores them so). The file is about half the size,
which is what lets a larger encoder ship within the package's budget. CPUs are slow at
float16 arithmetic, hence storage only, never compute.
"""

from __future__ import annotations

import numpy as np

from petseg.inference.quantize import PRECISION_METADATA_KEY

# Smaller tensors (biases, quantization scales, shapes) stay float32: they weigh nothing.
MIN_ELEMENTS = 1024
FLOAT16_MAX = float(np.finfo(np.float16).max)
CAST_SUFFIX = "_float16"
PRECISION_NOTE = ", float16 weights"


def store_weights_float16(model: bytes, *, min_elements: int = MIN_ELEMENTS) -> bytes:
    """ONNX bytes -> the same model with its float32 weights stored in float16."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph_model = onnx.load_from_string(model)
    graph = graph_model.graph
    graph_inputs = {value.name for value in graph.input}  # an initializer that is also an input can be overridden
    initializers, casts = [], []
    for tensor in graph.initializer:
        array = numpy_helper.to_array(tensor) if tensor.data_type == TensorProto.FLOAT else None
        if (array is None or array.size < min_elements or tensor.name in graph_inputs
                or not np.all(np.abs(array) <= FLOAT16_MAX)):
            initializers.append(tensor)
            continue
        stored = numpy_helper.from_array(array.astype(np.float16), tensor.name + CAST_SUFFIX)
        initializers.append(stored)
        casts.append(helper.make_node("Cast", [stored.name], [tensor.name], to=TensorProto.FLOAT,
                                      name=tensor.name + CAST_SUFFIX + "_to_float32"))
    nodes = casts + list(graph.node)
    del graph.initializer[:], graph.node[:]
    graph.initializer.extend(initializers)
    graph.node.extend(nodes)
    metadata = {prop.key: prop.value for prop in graph_model.metadata_props}
    precision = metadata.get(PRECISION_METADATA_KEY, "float32")
    if not precision.endswith(PRECISION_NOTE):  # a second pass finds nothing left to store
        onnx.helper.set_model_props(graph_model, {**metadata, PRECISION_METADATA_KEY: precision + PRECISION_NOTE})
    return graph_model.SerializeToString()
