"""The generated C solver loop: float32 against Q15.16 fixed-point RK state (issue 14, Build 1), and the
Cortex-M4F run on qemu (Build 3).

For every tableau, on the spiral test bundle's MLP field (a real ONNX file run by onnxruntime): the max
abs difference of the C loop's trajectory (host build, ctypes) from the Python loop's
(:class:`edgeode.runtime.loop.FieldLoop`), for each RK state type; then ``arm-none-eabi-size`` of the
solver object built for Cortex-M4F (code = text, RAM = bss) at the spiral's state (2 values) and at the
digits ODE-Net's (32 x 3 x 3 = 288 values); then the qemu mps2-an386 run of the spiral (solver + the
field as C) against the Python runtime, with its wall time.

    python3 benchmarks/mcu_solver.py            # needs torch (to build the test bundle), cc; ARM parts skip without the tools
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import HelpFormatter, log, machine_info, machine_markdown, markdown_table, write_results

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

STATE_SIZES = (2, 288)
Y0 = np.array([[0.6, -0.4], [-0.3, 0.5], [0.1, 0.2]], np.float32)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--steps", type=int, default=8, help="solver steps of the host comparison")
    parser.add_argument("--out", type=Path, default=None, help="results directory (default benchmarks/results)")
    args = parser.parse_args()

    import runtime_bundles as rb

    from edgeode.firmware import STATE_TYPES, generate_solver
    from edgeode.firmware.field_c import onnx_field_to_c
    from edgeode.firmware.host import HostSolver
    from edgeode.firmware.qemu import ARM_CFLAGS, object_size, run_on_cortex_m4
    from edgeode.firmware.toolchain import arm_tools, run, write_sources
    from edgeode.runtime import load
    from edgeode.runtime.backends import open_session
    from edgeode.runtime.bundle import read_bundle
    from edgeode.runtime.loop import FieldLoop
    from edgeode.tableaus import TABLEAUS

    work = Path(tempfile.mkdtemp(prefix="mcu-solver-"))
    log("building the spiral test bundle")
    built = rb.build_dynamics(work / "dynamics", formats=("onnx",), steps=args.steps)
    bundle = read_bundle(built.path)
    art = bundle.artifacts(role="field", format="onnx")[0]
    session = open_session("onnxruntime", bundle.path(art), art)
    dt = 2.0 / args.steps
    accuracy = []
    for name, tab in TABLEAUS.items():
        loop = FieldLoop(session, tab)
        ref: list[np.ndarray] = []
        loop.integrate(Y0, 0.0, dt, args.steps, out=ref)
        row = {"tableau": name}
        for st in STATE_TYPES:
            solver = HostSolver(generate_solver(tab, Y0.size, state_type=st, prefix=f"s_{st}"), work / f"host-{name}-{st}")
            got = solver.solve(lambda t, h, _loop=loop: _loop._f(t, h), Y0, 0.0, dt, args.steps)
            row[st] = float(np.abs(got - np.stack(ref)).max())
        accuracy.append(row)
        log(f"{name}: " + ", ".join(f"{st} {row[st]:.3g}" for st in STATE_TYPES))

    tools, why = arm_tools()
    sizes, m4 = [], None
    if tools is None:
        log(f"ARM parts skipped: {why}")
    else:
        for n in STATE_SIZES:
            for st in STATE_TYPES:
                gen = generate_solver("rk4", n, state_type=st)
                (src,) = write_sources(gen.files(), work / f"arm-{n}-{st}")
                obj = src.with_suffix(".o")
                run([tools.gcc, *ARM_CFLAGS, "-c", "-o", obj, src], timeout=120)
                size = object_size(tools, obj)
                sizes.append({"state": n, "state_type": st, "code": size.text, "ram": size.bss + size.data,
                              "ram_generator": gen.ram_bytes})
        model = load(built.path, backend="onnxruntime", mode="loop")
        sol = model.manifest.solver
        expected = model.solve(Y0)[1:]
        t0 = time.perf_counter()
        result = run_on_cortex_m4(tools, generate_solver(sol.tableau, 2), onnx_field_to_c(bundle.path(art)), Y0,
                                  sol.t0, (sol.t1 - sol.t0) / sol.steps, sol.steps, work / "qemu")
        wall = time.perf_counter() - t0
        m4 = {"tableau": sol.tableau.name, "steps": sol.steps, "cases": len(Y0),
              "max_abs_vs_python_runtime": float(np.abs(result.trajectories.transpose(1, 0, 2) - expected).max()),
              "build_and_run_s": round(wall, 2), "solver": vars(result.solver), "field": vars(result.field),
              "program": vars(result.program)}
        log(f"qemu: max |diff| {m4['max_abs_vs_python_runtime']:.3g}, {wall:.1f} s build + run")

    info = machine_info()
    md = [f"# The generated C solver loop\n\n{machine_markdown(info)}\n",
          f"Host C loop (cc, -O2 -ffp-contract=off, ctypes) vs the Python loop, spiral test field (onnxruntime), "
          f"{args.steps} steps of dt = {dt:g}, 3 initial states: max |difference| of the trajectory.\n",
          markdown_table(["tableau", *STATE_TYPES], [[r["tableau"], *(f"{r[st]:.3g}" for st in STATE_TYPES)] for r in accuracy])]
    if sizes:
        md += ["\nSolver object for Cortex-M4F (arm-none-eabi-gcc -O2, rk4), bytes from arm-none-eabi-size:\n",
               markdown_table(["state values", "RK state", "code (text)", "RAM (data + bss)"],
                              [[s["state"], s["state_type"], s["code"], s["ram"]] for s in sizes])]
    if m4:
        md += [f"\nqemu mps2-an386 (Cortex-M4F), spiral {m4['tableau']} x {m4['steps']} steps, {m4['cases']} states: "
               f"max |difference| from the Python runtime {m4['max_abs_vs_python_runtime']:.3g}; build + run "
               f"{m4['build_and_run_s']} s. Sizes (text/data/bss): solver {m4['solver']}, field {m4['field']}, whole "
               f"program with newlib {m4['program']}.\n"]
    write_results("mcu_solver", {"machine": info, "accuracy": accuracy, "arm_sizes": sizes, "qemu": m4}, "\n".join(md) + "\n",
                  args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
