"""A generated firmware project (``edgeode pack BUNDLE --device nano-33-ble-sense``) built for Cortex-M4F
against TensorFlow Lite Micro from source and run on qemu's mps2-an386 (issue 14, contract item 3).

The project's own files are compiled unchanged, except that ``src/main.cpp`` (the Arduino sketch) is
replaced by an emulator entry that prints through semihosting, and ``<Chirale_TensorFlowLite.h>`` is an
empty header: the TFLM headers it would bring are on the include path. TFLM is built from the source
tree given with ``--tflm`` (reference kernels; objects cached in ``--build``), with FlatBuffers headers
at the version that tree's ``schema_generated.h`` asserts (``--flatbuffers``), gemmlowp's fixedpoint
headers (Debian's ``libgemmlowp-dev``) and a no-op stand-in for ruy's profiler label. The firmware prints each sample's class beside the host TFLM
loop's (packed into the project by ``edgeode pack``); this script checks them and writes
``benchmarks/results/mcu_firmware_qemu.{md,json}``. It takes minutes (TFLM compiles ~170 files once).

    python3 benchmarks/mcu_firmware_qemu.py PROJECT --tflm TFLM_SRC --flatbuffers FLATBUFFERS/include
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import HelpFormatter, log, machine_info, machine_markdown, write_results

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CXXFLAGS = ("-O2", "-std=c++17", "-fno-rtti", "-fno-exceptions", "-fno-threadsafe-statics", "-fno-unwind-tables",
            "-ffunction-sections", "-fdata-sections", "-DTF_LITE_STATIC_MEMORY", "-DTF_LITE_MCU_DEBUG_LOG", "-w")
_SAMPLE = re.compile(r"^sample (\d+): class (\d+) \(host (\d+)\) (ok|MISMATCH)")


#: kernel source names of ops whose file is not the op's snake-case name
_KERNEL_FILES = {"CONV_2D": "conv", "DEPTHWISE_CONV_2D": "depthwise_conv", "MEAN": "reduce", "SUM": "reduce",
                 "REDUCE_MAX": "reduce", "RSQRT": "elementwise", "SQRT": "elementwise", "ABS": "elementwise",
                 "SIN": "elementwise", "COS": "elementwise", "LOG": "elementwise", "SQUARE": "elementwise",
                 "AVERAGE_POOL_2D": "pooling", "MAX_POOL_2D": "pooling", "LOGISTIC": "logistic", "RELU": "activations",
                 "RELU6": "activations"}


def tflm_sources(src: Path, ops: list[str]) -> list[Path]:
    """TFLM's library sources as its Makefile lists them (micro core, the shared TFLite part), with the
    reference kernels of ``ops`` only (the resolver references no other; this saves most of the build)."""
    micro = src / "tensorflow" / "lite" / "micro"
    wanted = {_KERNEL_FILES.get(op, op.lower()) for op in ops} | {"kernel_util"}
    kernels = [p for p in micro.glob("kernels/*.cc") if p.stem.removesuffix("_common") in wanted]
    globs = [micro.glob("*.cc"), kernels, micro.glob("arena_allocator/*.cc"),
             micro.glob("memory_planner/*.cc"), micro.glob("tflite_bridge/*.cc"),
             (src / "tensorflow" / "lite" / "core").rglob("*.cc"), (src / "tensorflow" / "lite" / "kernels").glob("*.cc"),
             (src / "tensorflow" / "lite" / "kernels" / "internal").glob("*.cc"), (src / "tensorflow" / "compiler").rglob("*.cc")]
    return sorted(p for g in globs for p in g if not p.name.endswith("_test.cc"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("project", type=Path, help="directory written by edgeode pack --device nano-33-ble-sense")
    parser.add_argument("--tflm", type=Path, required=True, help="tensorflow/tflite-micro source tree")
    parser.add_argument("--flatbuffers", type=Path, required=True, help="FlatBuffers include directory")
    parser.add_argument("--gemmlowp", type=Path, default=Path("/usr/include/gemmlowp"), help="gemmlowp include directory")
    parser.add_argument("--build", type=Path, default=Path("/var/tmp/edgeode-tflm/build"), help="object cache (outside the repo)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="results directory (default benchmarks/results)")
    parser.add_argument("--name", default="mcu_firmware_qemu",
                        help="results file stem (default mcu_firmware_qemu; e.g. mcu_firmware_qemu_series)")
    args = parser.parse_args()

    from edgeode.firmware.qemu import QEMU_COMMAND, object_size
    from edgeode.firmware.templates_io import render
    from edgeode.firmware.toolchain import CORTEX_M4F_FLAGS, arm_tools, run

    tools, why = arm_tools()
    if tools is None:
        log(why)
        return 2
    cxx = tools.gcc.replace("gcc", "g++")
    record = json.loads((args.project / "edgeode-pack.json").read_text())
    # ruy's profiler label, a no-op unless RUY_PROFILER is defined (as in ruy itself): the one ruy header TFLM's
    # reference kernels include
    stubs = args.build / "stubs"
    (stubs / "ruy" / "profiler").mkdir(parents=True, exist_ok=True)
    (stubs / "ruy" / "profiler" / "instrumentation.h").write_text(
        "#pragma once\nnamespace ruy { namespace profiler { class ScopeLabel { public:\n"
        "  template <typename... Args> explicit ScopeLabel(Args...) {}\n}; } }\n")
    inc = [f"-I{args.tflm}", f"-I{args.flatbuffers}", f"-I{args.gemmlowp}", f"-I{stubs}"]
    objdir = args.build / "tflm-obj"
    objdir.mkdir(parents=True, exist_ok=True)
    sources = tflm_sources(args.tflm, record["ops"])
    t0 = time.perf_counter()

    def compile_tflm(src: Path) -> Path:
        obj = objdir / (str(src.relative_to(args.tflm)).replace(os.sep, "_") + ".o")
        if not obj.exists():
            tmp = obj.with_suffix(".tmp.o")
            run([cxx, *CORTEX_M4F_FLAGS, *CXXFLAGS, *inc, "-c", src, "-o", tmp], timeout=900)
            tmp.replace(obj)
        return obj

    log(f"TFLM: {len(sources)} sources (cached objects in {objdir})")
    with ThreadPoolExecutor(args.jobs) as pool:
        tflm_objs = list(pool.map(compile_tflm, sources))
    lib_s = time.perf_counter() - t0
    work = args.build / f"fw-{args.project.name}"
    work.mkdir(parents=True, exist_ok=True)
    (work / "Chirale_TensorFlowLite.h").write_text("/* stand-in: the TFLM headers are on the include path */\n")
    (work / "main_firmware.cpp").write_text(render("qemu/main_firmware.cpp"))
    (work / "startup.c").write_text(render("qemu/startup.c"))
    (work / "link.ld").write_text(render("qemu/link.ld"))
    src_dir = args.project / "src"
    fw_sources = [p for p in sorted(src_dir.iterdir()) if p.suffix in (".c", ".cpp") and p.name != "main.cpp"]
    fw_objs = []
    for src in [*fw_sources, work / "main_firmware.cpp", work / "startup.c"]:
        obj = work / (src.name + ".o")
        if src.suffix == ".c":
            run([tools.gcc, *CORTEX_M4F_FLAGS, "-O2", "-std=c99", "-ffp-contract=off", f"-I{src_dir}", "-c", src, "-o", obj],
                timeout=300)
        else:
            run([cxx, *CORTEX_M4F_FLAGS, *CXXFLAGS, "-ffp-contract=off", f"-I{work}", f"-I{src_dir}", *inc, "-c", src,
                 "-o", obj], timeout=300)
        fw_objs.append(obj)
    elf = work / "firmware.elf"
    run([cxx, *CORTEX_M4F_FLAGS, "--specs=rdimon.specs", "-T", work / "link.ld", "-Wl,--gc-sections", "-o", elf,
         *fw_objs, *tflm_objs, "-lm"], timeout=600)
    size = object_size(tools, elf)
    t1 = time.perf_counter()
    proc = run([tools.qemu, *QEMU_COMMAND, elf], timeout=1800)
    qemu_s = time.perf_counter() - t1
    print(proc.stdout, end="")
    samples = [m.groups() for m in map(_SAMPLE.match, proc.stdout.splitlines()) if m]
    agree = sum(1 for _, board, host, _ in samples if board == host)
    ok = len(samples) == record["samples"] and agree == len(samples)
    info = machine_info()
    result = {"machine": info, "project": str(args.project), "device": record["device"], "bundle": record["bundle"],
              "tflm_sources": len(sources), "samples": len(samples), "agree_with_host_argmax": agree,
              "program": vars(size), "tflm_build_s": round(lib_s, 1), "qemu_run_s": round(qemu_s, 1),
              "output": proc.stdout}
    md = (f"# Generated firmware on an emulated Cortex-M4F\n\n{machine_markdown(info)}\n\n"
          f"Project `{args.project.name}` ({record['device']}, bundle `{record['bundle']}`), built against TFLM from "
          f"source ({len(sources)} files, reference kernels) with arm-none-eabi-g++ -O2, run on qemu mps2-an386: "
          f"{agree} of {len(samples)} samples' classes equal the host TFLM loop's. Program (text/data/bss): "
          f"{size.text:,} / {size.data:,} / {size.bss:,} bytes. TFLM build {lib_s:.0f} s (cached after the first), "
          f"qemu run {qemu_s:.1f} s.\n\n```\n{proc.stdout}```\n")
    write_results(args.name, result, md, args.out)
    log(f"{agree} of {len(samples)} samples agree with the host; program {size.text + size.data:,} B flash, "
        f"{size.data + size.bss:,} B RAM")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
