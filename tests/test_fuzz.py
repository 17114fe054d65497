"""Property-based fuzzing (hypothesis), short budget: every hostile manifest, input file, CLI argument and
model file either works or gives a typed error; no traceback, no hang, no crash; a hand-edited manifest is
refused or changes nothing (no lie).

The targets are in ``tests/fuzz_targets.py``; ``python3 benchmarks/fuzz.py`` runs them with a long
budget and prints the counts. Examples are derandomized (the same cases on every run and machine).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fuzz_targets as ft  # noqa: E402

BUDGET = {"manifest": 60, "contract": 40, "npy": 150, "image": 150, "cli": 60, "model": 30}
GOOD = ("ok", "typed", "usage")


@pytest.fixture(scope="module")
def fuzzer(onnx_bundles, tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    built = onnx_bundles.classifier  # the session's: the fuzzer damages copies, never the original
    fz = ft.Fuzzer(built.path, built.x[:2], root / "work")
    yield fz
    fz.close()


@pytest.mark.parametrize("target", list(BUDGET))
def test_fuzz_target(fuzzer, target):
    strategy, run = fuzzer.targets()[target]
    outcomes = []

    @settings(max_examples=BUDGET[target], deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def prop(case):
        outcome, detail = run(case)
        outcomes.append(outcome)
        assert outcome in GOOD, f"{outcome} on {case!r}:\n{detail}"

    prop()
    assert len(outcomes) >= BUDGET[target] // 2  # the strategy really produced cases
