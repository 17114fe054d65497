"""The fixed-step Runge–Kutta loop as generated C99, from a :class:`~edgeode.tableaus.ButcherTableau`.

The generated file does what :class:`edgeode.runtime.loop.FieldLoop` does, in the same order of
operations, so that in float32 it gives the same bits as the Python loop around the same field
(compiled with ``-ffp-contract=off``; measured in ``tests/test_firmware_solver.py``)::

    k_i = f(t + c_i dt, h + dt * sum_{j<i} a_ij k_j),   h' = h + dt * sum_i b_i k_i

(Butcher 2016, §23.) The tableau is unrolled at generation time: one block per stage, zero
coefficients left out. Buffers are static arrays sized for the state (no malloc).

Two representations of the RK state can be generated, to choose by measurement:

* ``float32`` (the default): the state, the stage inputs and the k_i in float; the field is called on
  the solver's own buffers.
* ``q16`` (Q15.16 fixed point in int32, for FPU-less cores): the same arithmetic in integers, with a
  float buffer in and out of the field. On the Cortex-M4F and the ESP32-S3 (both have a single-precision
  FPU) it costs accuracy and RAM and gains nothing; ``benchmarks/mcu_solver.py`` measures both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgeode.errors import ConfigError
from edgeode.firmware.templates_io import render
from edgeode.tableaus import ButcherTableau, get_tableau

__all__ = ["STATE_TYPES", "SolverSource", "generate_solver", "solver_state_bytes"]

STATE_TYPES = ("float32", "q16")
_PREFIX = re.compile(r"^[a-z][a-z0-9_]{0,30}$")
#: Bound on the state size the generator accepts (static buffers: (stages + 2) * N * 4 bytes of RAM).
MAX_STATE = 1 << 20

_FLOAT_DEFS = """typedef float rk_t;
#define RK_FROM_FLOAT(x) (x)
#define RK_TO_FLOAT(x) (x)
#define RK_MUL(a, b) ((a) * (b))
#define RK_COEF(x) ((float)(x))"""

_Q16_DEFS = """/* Q15.16 fixed point: value = raw / 65536; products rounded toward minus infinity by the shift. */
typedef int32_t rk_t;
#define RK_ONE 65536.0f
#define RK_FROM_FLOAT(x) ((int32_t)((x) * RK_ONE + ((x) >= 0.0f ? 0.5f : -0.5f)))
#define RK_TO_FLOAT(x) ((float)(x) / RK_ONE)
#define RK_MUL(a, b) ((int32_t)(((int64_t)(a) * (int64_t)(b)) >> 16))
#define RK_COEF(x) RK_FROM_FLOAT((float)(x))"""


def solver_state_bytes(tableau: ButcherTableau | str, state_size: int, state_type: str = "float32") -> int:
    """RAM of the generated loop's static buffers for ``state_size`` state values (what it adds to ``.bss``).

    k_1..k_s, h and (unless every stage starts at h, as Euler's) the stage input y, 4 bytes each per
    value, plus the float buffers in and out of the field for the ``q16`` state.
    """
    tab = get_tableau(tableau)
    stage_input = int(any(any(row) for row in tab.a))
    return (tab.stages + 1 + stage_input) * state_size * 4 + (2 * state_size * 4 if state_type == "q16" else 0)


@dataclass(frozen=True)
class SolverSource:
    """A generated solver: ``header`` goes to ``<prefix>_solver.h``, ``source`` to ``<prefix>_solver.c``."""

    prefix: str
    tableau: ButcherTableau
    state_size: int
    state_type: str
    header: str
    source: str
    #: RAM of the static buffers (bytes): what the solver adds to the firmware's .bss
    ram_bytes: int

    @property
    def header_name(self) -> str:
        return f"{self.prefix}_solver.h"

    @property
    def source_name(self) -> str:
        return f"{self.prefix}_solver.c"

    def files(self) -> dict[str, str]:
        """File name -> text, for writing into a project."""
        return {self.header_name: self.header, self.source_name: self.source}


def _literal(x: float) -> str:
    """A C double literal that parses to exactly ``x`` (``repr`` round-trips doubles)."""
    text = repr(float(x))
    return text if any(ch in text for ch in ".e") else text + ".0"


def _stage_code(tab: ButcherTableau, fixed: bool, indent: str) -> tuple[list[str], str]:
    """The coefficient declarations (at ``indent``) and the unrolled stage blocks (one level deeper)."""
    coef = [f"{indent}/* coefficients times dt, rounded to the state type once per solve (as the Python loop does) */"]
    blocks = []
    for i, row in enumerate(tab.a):
        terms = [(j, a) for j, a in enumerate(row) if a != 0.0]
        for j, a in terms:
            coef.append(f"{indent}const rk_t a{i}_{j} = RK_COEF(dt * {_literal(a)});")
        coef.append(f"{indent}const double c{i} = {_literal(tab.c[i])} * dt;")
        lines = [f"{indent}    /* stage {i + 1}: t + {tab.c[i]:g} dt */"]
        if terms:
            lines.append(f"{indent}    for (i = 0; i < N; ++i) {{")
            lines.append(f"{indent}        rk_t acc = rk_h[i];")
            lines += [f"{indent}        acc += RK_MUL(rk_k[{j}][i], a{i}_{j});" for j, _ in terms]
            lines.append(f"{indent}        rk_y[i] = acc;")
            lines.append(f"{indent}    }}")
            stage_in = "rk_y"
        else:
            stage_in = "rk_h"
        call = f"(float)(t + c{i})"
        if fixed:
            lines.append(f"{indent}    for (i = 0; i < N; ++i) rk_fin[i] = RK_TO_FLOAT({stage_in}[i]);")
            lines.append(f"{indent}    if (field({call}, rk_fin, rk_fout, ctx) != 0) return EDGEODE_FIELD_FAILED;")
            lines.append(f"{indent}    for (i = 0; i < N; ++i) rk_k[{i}][i] = RK_FROM_FLOAT(rk_fout[i]);")
        else:
            lines.append(f"{indent}    if (field({call}, {stage_in}, rk_k[{i}], ctx) != 0) return EDGEODE_FIELD_FAILED;")
        blocks.append("\n".join(lines))
    return coef, "\n".join(blocks)


def _update_code(tab: ButcherTableau, indent: str) -> tuple[list[str], str]:
    terms = [(i, b) for i, b in enumerate(tab.b) if b != 0.0]
    coef = [f"{indent}const rk_t b{i} = RK_COEF(dt * {_literal(b)});" for i, b in terms]
    lines = [f"{indent}    /* update: h += dt * sum_i b_i k_i */", f"{indent}    for (i = 0; i < N; ++i) {{",
             f"{indent}        rk_t acc = rk_h[i];"]
    lines += [f"{indent}        acc += RK_MUL(rk_k[{i}][i], b{i});" for i, _ in terms]
    lines += [f"{indent}        rk_h[i] = acc;", f"{indent}    }}"]
    return coef, "\n".join(lines)


def generate_solver(tableau: str | ButcherTableau, state_size: int, *, state_type: str = "float32",
                    prefix: str = "edgeode") -> SolverSource:
    """C99 source of a fixed-step solver for ``tableau`` on a state of ``state_size`` floats.

    Args:
        tableau: a tableau or its name (:func:`edgeode.tableaus.get_tableau`), normally the bundle's
            ``solver.tableau`` so the device runs the trained scheme.
        state_size: number of float values in the state (the product of the state shape, batch 1).
        state_type: ``"float32"`` or ``"q16"`` (see the module docstring).
        prefix: C identifier prefix of the API and the file names (lowercase, ``[a-z][a-z0-9_]*``).

    Raises:
        ConfigError: a bad state size, state type or prefix. TableauError: an unknown tableau name.
    """
    from edgeode import __version__

    tab = get_tableau(tableau)
    if state_type not in STATE_TYPES:
        raise ConfigError(f"unknown RK state type {state_type!r}; choose one of {', '.join(STATE_TYPES)}")
    if not isinstance(state_size, int) or isinstance(state_size, bool) or not 1 <= state_size <= MAX_STATE:
        raise ConfigError(f"state_size must be an integer in 1..{MAX_STATE} (the number of state values), "
                          f"got {state_size!r}")
    if not _PREFIX.match(prefix):
        raise ConfigError(f"C prefix {prefix!r} must be lowercase letters, digits and '_', starting with a letter")
    fixed = state_type == "q16"
    upper = prefix.upper()
    indent = " " * 8
    coef, stages = _stage_code(tab, fixed, indent)
    update_coef, update = _update_code(tab, indent)
    coefficients = "\n".join(coef + update_coef)
    ram = solver_state_bytes(tab, state_size, state_type)
    values = dict(
        prefix=prefix, PREFIX=upper, version=__version__, tableau_name=tab.name, stages=tab.stages,
        order=tab.order, state_size=state_size, ram_bytes=ram, guard=f"{upper}_SOLVER_H",
        state_doc="float32" if not fixed else "Q15.16 fixed point (int32)",
    )
    header = render("rk_solver.h.in", **values)
    buffers = "static rk_t rk_y[N]; /* stage input */" if any(any(row) for row in tab.a) else ""
    if fixed:
        buffers += "\nstatic float rk_fin[N];\nstatic float rk_fout[N];"
    source = render(
        "rk_solver.c.in", **values, state_defs=_Q16_DEFS if fixed else _FLOAT_DEFS, field_buffers=buffers,
        coefficients=coefficients, stages_code=stages.replace("EDGEODE_FIELD_FAILED", f"{upper}_ERR_FIELD"),
        update_code=update,
    )
    return SolverSource(prefix, tab, state_size, state_type, header, source, ram)
