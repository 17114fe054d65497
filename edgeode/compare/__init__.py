"""``edgeode compare``: ODE-Net vs RK-Net vs ResNet vs VGG on device profiles (trains models: needs torch).

    >>> from edgeode.compare import CompareConfig, run_compare
    >>> report = run_compare(CompareConfig(device="pi-zero-2w", out_dir="report", quick=True))
"""

from __future__ import annotations

from edgeode.compare.runner import MNIST_ARCHS, CompareConfig, run_compare

__all__ = ["CompareConfig", "run_compare", "MNIST_ARCHS"]
