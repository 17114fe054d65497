"""The Cortex-M4F proof: the generated solver and a C field cross-compiled and run on qemu's mps2-an386.

:func:`run_on_cortex_m4` builds a bare-metal program (start-up, linker script and main from the package
templates in ``templates/qemu``), runs it under ``qemu-system-arm -M mps2-an386`` with semihosting, and
returns the printed trajectories (float32 bits, exact) with the solver's code and RAM sizes from
``arm-none-eabi-size``. The recipe (vector table, FPU enable, rdimon, keeping ``.data`` in place) is the
one measured in DESIGN.md, *Microcontrollers*.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeode.firmware.field_c import FieldSource
from edgeode.firmware.solver_c import SolverSource
from edgeode.firmware.templates_io import render
from edgeode.firmware.toolchain import CORTEX_M4F_FLAGS, ArmTools, CompileError, run, write_sources

__all__ = ["ARM_CFLAGS", "CortexM4Run", "ObjectSize", "QEMU_COMMAND", "object_size", "run_on_cortex_m4"]

#: Compiler flags of the proof: the board's ISA and FPU, and no FMA contraction (to match the host loop).
ARM_CFLAGS = (*CORTEX_M4F_FLAGS, "-std=c99", "-O2", "-ffp-contract=off", "-Wall", "-Wextra", "-Werror")
QEMU_COMMAND = ("-M", "mps2-an386", "-nographic", "-semihosting-config", "enable=on,target=native", "-kernel")
_STATE_LINE = re.compile(r"^state (\d+) (\d+)((?: [0-9a-f]{8})+)$")


@dataclass(frozen=True)
class ObjectSize:
    """``arm-none-eabi-size`` of one object or program (Berkeley format): flash is text + data, RAM data + bss."""

    text: int
    data: int
    bss: int

    @property
    def flash(self) -> int:
        return self.text + self.data

    @property
    def ram(self) -> int:
        return self.data + self.bss


@dataclass(frozen=True)
class CortexM4Run:
    """What the emulated Cortex-M4F printed and how big the pieces are."""

    trajectories: np.ndarray  # [cases, steps, state] float32, decoded from the printed bits
    solver: ObjectSize
    field: ObjectSize
    program: ObjectSize
    output: str


def object_size(tools: ArmTools, path: Path) -> ObjectSize:
    """Sizes of an object file or ELF from ``arm-none-eabi-size`` (Berkeley format)."""
    out = run([tools.size, "-B", path], timeout=30).stdout.splitlines()
    text, data, bss = (int(v) for v in out[1].split()[:3])
    return ObjectSize(text, data, bss)


def _c_float(x: float) -> str:
    return float(np.float32(x)).hex() + "f"


def run_on_cortex_m4(tools: ArmTools, solver: SolverSource, field: FieldSource, initial: np.ndarray, t0: float,
                     dt: float, steps: int, workdir: Path, timeout: float = 60.0) -> CortexM4Run:
    """Build and run the proof program; ``initial`` is ``[cases, state]`` (each case solved at batch 1).

    Raises:
        CompileError: a compile, link or emulator failure (with its output), or output that is not the
            expected ``cases * steps`` state lines.
    """
    initial = np.asarray(initial, np.float32)
    if initial.ndim != 2 or initial.shape[1] != solver.state_size or field.state_size != solver.state_size:
        raise ValueError(f"initial states must be [cases, {solver.state_size}], got {initial.shape}")
    rows = ",\n".join("    {" + ", ".join(_c_float(v) for v in row) + "}" for row in initial)
    main = render("qemu/main.c.in", cases=len(initial), steps=steps, tableau_name=solver.tableau.name,
                  solver_header=solver.header_name, field_header=f"{field.name}.h", prefix=solver.prefix,
                  PREFIX=solver.prefix.upper(), initial=rows, field_function=field.function,
                  t0=repr(float(t0)), dt=repr(float(dt)))
    files = {**solver.files(), **field.files(), "main.c": main, "startup.c": render("qemu/startup.c"),
             "link.ld": render("qemu/link.ld")}
    sources = write_sources(files, workdir)
    objects = []
    for src in sources:
        obj = src.with_suffix(".o")
        run([tools.gcc, *ARM_CFLAGS, "-c", "-o", obj, src], timeout=120, cwd=workdir)
        objects.append(obj)
    elf = workdir / "proof.elf"
    run([tools.gcc, *CORTEX_M4F_FLAGS, "--specs=rdimon.specs", "-T", workdir / "link.ld", "-o", elf, *objects,
         "-lm"], timeout=120, cwd=workdir)
    proc = run([tools.qemu, *QEMU_COMMAND, elf], timeout=timeout, cwd=workdir)
    states = np.zeros((len(initial), steps, solver.state_size), np.uint32)
    seen = 0
    for line in proc.stdout.splitlines():
        m = _STATE_LINE.match(line.strip())
        if m:
            c, n = int(m.group(1)), int(m.group(2))
            states[c, n - 1] = [int(v, 16) for v in m.group(3).split()]
            seen += 1
    if seen != len(initial) * steps or "done" not in proc.stdout:
        raise CompileError(f"qemu printed {seen} of {len(initial) * steps} state lines:\n{proc.stdout}{proc.stderr}")
    return CortexM4Run(
        trajectories=states.view(np.float32), solver=object_size(tools, workdir / f"{solver.prefix}_solver.o"),
        field=object_size(tools, workdir / f"{field.name}.o"), program=object_size(tools, elf), output=proc.stdout,
    )
