"""Cutting pets out of photos: the Segmenter, alpha and compositing, and `remove_background`.

Module map: segmenter (model loading, letterboxed prediction), backends (PyTorch and
ONNX Runtime), compose (alpha, label maps, composites), refine (guided-filter edges),
api (remove_background), files (inputs, output names, atomic writes), pipeline
(batched, overlapped processing of many files).
"""

from petseg.inference.api import CutoutOptions, remove_background
from petseg.inference.segmenter import Prediction, Segmenter

__all__ = ["CutoutOptions", "Prediction", "Segmenter", "remove_background"]
