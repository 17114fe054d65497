"""The torch-free device runtime: read a bundle, run it with onnxruntime / LiteRT / tflite-runtime.

    >>> from edgeode.runtime import load
    >>> model = load("bundle/", backend="auto", mode="fused")
    >>> scores = model.predict(x)            # x: float32 [B, C, H, W]
    >>> model.describe()["field_evaluations"]

A series bundle (an ODE-RNN on sensor samples) loads as a :class:`SeriesModel`: ``state =
model.observe(state, t, x)`` per sample, ``model.classify(state)`` (:mod:`edgeode.runtime.series`).

Needs numpy and one backend; never imports torch (``tests/test_no_torch.py`` proves it).
"""

from __future__ import annotations

from edgeode.runtime.backends import BACKENDS, backend_available
from edgeode.runtime.bundle import Bundle, read_bundle
from edgeode.runtime.image import load_image, preprocess_image
from edgeode.runtime.manifest import Manifest
from edgeode.runtime.model import MODES, Model, load
from edgeode.runtime.series import SeriesModel, SeriesState

__all__ = [
    "BACKENDS",
    "MODES",
    "Bundle",
    "Manifest",
    "Model",
    "SeriesModel",
    "SeriesState",
    "backend_available",
    "load",
    "load_image",
    "preprocess_image",
    "read_bundle",
]
