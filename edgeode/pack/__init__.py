"""Device packages: a bundle plus everything a device needs to run it, with nothing fetched there.

``edgeode pack BUNDLE --device pi-4b -o DIR`` (or :func:`pack`) writes, for a Linux board with
Python, the verified bundle, a wheelhouse of the runtime's dependencies for the device's platform
(edgeode as a pure wheel; never torch), a README and ``run.sh``; for an Android phone, the fused
``.tflite`` file, its manifest and an integration note. See :mod:`edgeode.pack.builder`.

No torch (pip runs as a subprocess).
"""

from __future__ import annotations

from edgeode.pack.builder import BACKENDS, DEFAULT_PYTHON, PackResult, pack, requirements_for, select_backends

__all__ = ["BACKENDS", "DEFAULT_PYTHON", "PackResult", "pack", "requirements_for", "select_backends"]
