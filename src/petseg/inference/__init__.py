"""Cutting pets out of photos: photo -> letterbox -> backend -> probabilities -> alpha -> image file.

Module map: segmenter (model loading, numpy letterboxing, Prediction), backends
(PyTorch and ONNX Runtime), compose (soft and hard alpha, label maps, composites),
matting (matted alpha and edge colours), render (CutoutOptions, the output image,
PNG/JPEG files), provenance (which options made an output folder's files),
api (remove_background), files (inputs, output names), pipeline (batched, overlapped
processing of many files), export (PyTorch -> ONNX, with a parity check), quantize
(int8, calibrated on photos).
Nothing here imports torch unless a PyTorch model or backend is asked for.
"""

from petseg.inference.api import remove_background
from petseg.inference.render import CutoutOptions, encode, render_cutout, save_image
from petseg.inference.segmenter import Prediction, Segmenter

__all__ = ["CutoutOptions", "Prediction", "Segmenter", "encode", "remove_background", "render_cutout", "save_image"]
