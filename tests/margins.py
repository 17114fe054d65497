"""Class comparisons that do not depend on how a near-tie falls.

Float rounding differs across CPUs (and between torch, onnxruntime and LiteRT kernels), and so do
the weights a seeded training run ends with. A test that asserts "the runtime predicts the class
torch predicts" on a sample whose two best logits are nearly equal passes on one machine and fails
on the next. If every logit of ``got`` is within ``error`` of ``ref``, the class can only change
where the margin between the best and second-best ``ref`` logit is at most ``2 * error``; so these
helpers compare classes only on the samples whose margin exceeds that (``decided``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["margins", "decided", "assert_same_class_where_decided"]


def margins(scores: np.ndarray) -> np.ndarray:
    """Best minus second-best score per sample (``scores`` [N, classes])."""
    top2 = np.sort(np.asarray(scores, np.float64), axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def decided(ref: np.ndarray, error: float) -> np.ndarray:
    """Mask of the samples whose class cannot change under a per-logit error of at most ``error``."""
    return margins(ref) > 2.0 * error


def assert_same_class_where_decided(got: np.ndarray, ref: np.ndarray, error: float, what: str = "",
                                    min_decided: float = 0.0) -> int:
    """Assert ``got`` picks ``ref``'s class on every sample ``decided(ref, error)``; return how many those are.

    ``min_decided`` is the fraction of samples that must be decided, so the check cannot pass
    vacuously (a fixture too poorly trained to have clear margins fails here, not by chance).
    """
    mask = decided(ref, error)
    assert mask.mean() >= min_decided, (
        f"{what}: only {int(mask.sum())} of {len(mask)} samples have a torch margin above 2 x {error:.3g}; "
        "the fixture model is not trained well enough for a class comparison")
    flipped = np.flatnonzero(mask & (np.asarray(got).argmax(1) != np.asarray(ref).argmax(1)))
    assert flipped.size == 0, (f"{what}: class differs from the reference on samples {flipped.tolist()} "
                               f"whose margins {margins(ref)[flipped].round(4).tolist()} exceed 2 x {error:.3g}")
    return int(mask.sum())
