"""edgeode: Neural ODEs (Chen et al. 2018, arXiv 1806.07366) from training to small devices.

    train (PyTorch, adjoint) -> export (ONNX / TFLite bundle) -> run on device (torch-free) -> profile

Importing ``edgeode`` is cheap and imports neither torch nor numpy; the parts live in subpackages:
:mod:`edgeode.tableaus`, :mod:`edgeode.train`, :mod:`edgeode.export`, :mod:`edgeode.runtime`,
:mod:`edgeode.devices`.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("edgeode")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
