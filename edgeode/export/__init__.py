"""torch -> ONNX / TFLite bundles, each file checked against torch by its real runtime.

``export_run(run_dir, out_dir)`` is the entry point (the ``edgeode export`` command);
``export_model`` exports an in-memory model. See :mod:`edgeode.export.bundle_writer`.
"""

from __future__ import annotations

from edgeode.export.bundle_writer import FORMATS, QUANTIZATIONS, ExportSource, export_model, export_run

__all__ = ["FORMATS", "QUANTIZATIONS", "ExportSource", "export_model", "export_run"]
