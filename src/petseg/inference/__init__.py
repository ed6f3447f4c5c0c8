"""Cutting pets out of photos: photo -> letterbox -> backend -> probabilities -> alpha -> image file.

Module map: segmenter (model loading, numpy letterboxing, Prediction), backends
(PyTorch and ONNX Runtime), compose (alpha, label maps, composites), refine
(guided-filter edges), render (CutoutOptions, the output image, PNG/JPEG files),
api (remove_background), files (inputs, output names), pipeline (batched, overlapped
processing of many files), export (PyTorch -> ONNX, with a parity check).
Nothing here imports torch unless a PyTorch model or backend is asked for.
"""

from petseg.inference.api import remove_background
from petseg.inference.render import CutoutOptions, encode, render_cutout, save_image
from petseg.inference.segmenter import Prediction, Segmenter

__all__ = ["CutoutOptions", "Prediction", "Segmenter", "encode", "remove_background", "render_cutout", "save_image"]
