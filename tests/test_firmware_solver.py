"""The solver loop generated as C (edgeode.firmware): on the host through ctypes against the Python
loop, and cross-compiled for a Cortex-M4F run on qemu's mps2-an386 against the Python runtime.

The float field is the spiral dynamics bundle's MLP (a real ONNX file run by onnxruntime). The host
tests need a C compiler; the Cortex-M4F test needs arm-none-eabi-gcc, newlib and qemu-system-arm
(``bash .ci/mcu-setup.sh`` installs them) and is skipped with the reason where they are missing.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgeode.errors import ConfigError, ExportError, SolverError, TableauError
from edgeode.firmware import generate_solver
from edgeode.tableaus import TABLEAUS, ButcherTableau

#: Ralston's second-order method: not among edgeode's named tableaus ("any tableau").
RALSTON = ButcherTableau("ralston", a=((), (2 / 3,)), b=(1 / 4, 3 / 4), c=(0.0, 2 / 3), order=2)
Y0 = np.array([[0.6, -0.4], [-0.3, 0.5], [0.1, 0.2]], np.float32)


@pytest.fixture(scope="module")
def spiral(onnx_bundles):
    """The tiny ONNX spiral dynamics bundle of tests/conftest.py (an MLP field on h**3)."""
    return onnx_bundles.dynamics


@pytest.fixture(scope="module")
def field_session(spiral):
    from edgeode.runtime.backends import open_session
    from edgeode.runtime.bundle import read_bundle

    bundle = read_bundle(spiral.path)
    art = bundle.artifacts(role="field", format="onnx")[0]
    return open_session("onnxruntime", bundle.path(art), art)


def _need_cc():
    from edgeode.firmware.toolchain import host_cc

    cc, why = host_cc()
    if cc is None:
        pytest.skip(why)


@pytest.mark.parametrize("tableau", [*TABLEAUS.values(), RALSTON], ids=lambda t: t.name)
def test_host_c_solver_equals_python_loop_bit_for_bit(field_session, tableau, tmp_path):
    """Same float32 operations in the same order (-ffp-contract=off): the C loop gives the Python loop's bits."""
    from edgeode.firmware.host import HostSolver
    from edgeode.runtime.loop import FieldLoop

    _need_cc()
    loop = FieldLoop(field_session, tableau)
    expected: list[np.ndarray] = []
    loop.integrate(Y0, 0.1, 0.3, 7, out=expected)
    solver = HostSolver(generate_solver(tableau, Y0.size), tmp_path)  # the batch of 3 as one 6-value state
    got = solver.solve(lambda t, h: loop._f(t, h), Y0, 0.1, 0.3, 7)
    np.testing.assert_array_equal(got, np.stack(expected))


def test_q16_state_is_less_accurate_than_float32(field_session, tmp_path):
    """The fixed-point RK state runs and stays near the float loop, but not on it: float32 is the default."""
    from edgeode.firmware.host import HostSolver
    from edgeode.runtime.loop import FieldLoop

    _need_cc()
    loop = FieldLoop(field_session, TABLEAUS["rk4"])
    expected: list[np.ndarray] = []
    loop.integrate(Y0, 0.0, 0.25, 8, out=expected)
    q16 = HostSolver(generate_solver("rk4", Y0.size, state_type="q16", prefix="q16"), tmp_path)
    err = np.abs(q16.solve(lambda t, h: loop._f(t, h), Y0, 0.0, 0.25, 8) - np.stack(expected)).max()
    # Q15.16 resolves 1.5e-5; about 20 rounded operations per step over 8 steps: measured 2.7e-4 here
    assert 0 < err < 2e-3


def test_c_solver_reports_nonfinite_state_and_field_failure(tmp_path):
    from edgeode.firmware.host import HostSolver

    _need_cc()
    solver = HostSolver(generate_solver("euler", 1), tmp_path)
    # dh/dt = 1e30 h^2 from h = 1: step 1 gives 1e30 (finite), step 2 overflows float32
    with pytest.raises(SolverError, match="step 2"), np.errstate(over="ignore"):
        solver.solve(lambda t, h: np.float32(1e30) * h * h, np.ones(1, np.float32), 0.0, 1.0, 5)

    def broken(t, h):
        raise KeyError("field backend failed")

    with pytest.raises(KeyError, match="field backend failed"):
        solver.solve(broken, np.ones(1, np.float32), 0.0, 1.0, 3)


def test_generator_checks_its_arguments():
    with pytest.raises(ConfigError, match="state_size"):
        generate_solver("rk4", 0)
    with pytest.raises(ConfigError, match="state type"):
        generate_solver("rk4", 4, state_type="float64")
    with pytest.raises(ConfigError, match="prefix"):
        generate_solver("rk4", 4, prefix="9bad")
    with pytest.raises(TableauError, match="unknown solver"):
        generate_solver("dopri5", 4)
    src = generate_solver("rk4", 5)
    # k1..k4, h and y: 6 buffers of 5 floats, no malloc anywhere
    assert src.ram_bytes == 6 * 5 * 4 and "malloc" not in src.source
    assert "#define EDGEODE_STATE_SIZE 5" in src.header


def test_field_as_c_equals_onnxruntime_on_the_host(spiral, field_session, tmp_path):
    """The spiral field translated to C (what the Cortex-M4F proof runs), compiled here, against onnxruntime."""
    import ctypes

    from edgeode.firmware.field_c import onnx_field_to_c
    from edgeode.firmware.toolchain import compile_host_library

    _need_cc()
    field = onnx_field_to_c(spiral.path / "onnx" / "field.onnx")
    assert field.ops == ("Constant", "Pow", "Gemm", "Tanh") and field.weight_bytes == (2 * 16 + 16 + 16 * 2 + 2) * 4
    lib = ctypes.CDLL(str(compile_host_library(field.files(), tmp_path, "field")))
    fp = ctypes.POINTER(ctypes.c_float)
    fn = lib.field_model_eval
    fn.argtypes = [ctypes.c_float, fp, fp, ctypes.c_void_p]
    h = np.random.default_rng(0).uniform(-1.5, 1.5, (50, 2)).astype(np.float32)
    got = np.empty_like(h)
    for i in range(len(h)):
        assert fn(0.0, h[i].ctypes.data_as(fp), got[i].ctypes.data_as(fp), None) == 0
    expected = field_session.run({"h": h})[0]  # the spiral field is autonomous: its ONNX file has no t
    # the weights are exact (hex floats); sums in another order and libm's tanhf: a few float32 ulps
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_field_translator_refuses_unsupported_ops(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from edgeode.firmware.field_c import onnx_field_to_c

    graph = helper.make_graph([helper.make_node("Softmax", ["h"], ["dh"])], "g",
                              [helper.make_tensor_value_info("h", TensorProto.FLOAT, [None, 3])],
                              [helper.make_tensor_value_info("dh", TensorProto.FLOAT, [None, 3])])
    path = tmp_path / "softmax.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(ExportError, match="op Softmax has no C translation"):
        onnx_field_to_c(path)


def test_cortex_m4f_on_qemu_matches_python_runtime(spiral, tmp_path):
    """The generated solver and the field as C, built for Cortex-M4F and run on qemu mps2-an386."""
    from edgeode.firmware.field_c import onnx_field_to_c
    from edgeode.firmware.qemu import run_on_cortex_m4
    from edgeode.firmware.toolchain import arm_tools
    from edgeode.runtime import load

    tools, why = arm_tools()
    if tools is None:
        pytest.skip(why)
    model = load(spiral.path, backend="onnxruntime", mode="loop")
    sol = model.manifest.solver
    expected = model.solve(Y0)[1:]  # [steps, cases, 2], the Python runtime's loop
    field = onnx_field_to_c(spiral.path / "onnx" / "field.onnx")
    result = run_on_cortex_m4(tools, generate_solver(sol.tableau, 2), field, Y0, sol.t0,
                              (sol.t1 - sol.t0) / sol.steps, sol.steps, tmp_path)
    got = result.trajectories.transpose(1, 0, 2)
    # The solver's arithmetic is the same; the field differs in rounding: onnxruntime's Gemm sums in
    # another order and newlib's tanhf is not MLAS's tanh (a few ulp per call). Measured 1.2e-7 over
    # 8 RK4 steps on states of size ~1; 1e-5 leaves room without hiding a wrong step (a step is ~0.1).
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    assert result.solver.bss == generate_solver(sol.tableau, 2).ram_bytes  # the static buffers, nothing else
    assert 0 < result.solver.text < 4096 and result.solver.data == 0
