"""``edgeode profile``: memory, latency, CPU time, MACs and energy of a bundle on a device profile."""

from __future__ import annotations

import argparse
import json

from edgeode.commands.options import add_device, add_expect_digest, add_json, add_quiet

HELP = """\
Run a bundle with the torch-free runtime in a child process and report, for a device profile:
bundle size, load time, peak resident memory (runtime floor + what the model adds), latency
p50/p95/p99 over warm runs, vector-field evaluations, CPU time and MACs per inference, an energy
proxy (CPU-seconds x the device's power model) and RAPL energy where readable, and whether it fits
the device's RAM and storage.

On a microcontroller profile (esp32-s3, nano-33-ble-sense, coral-dev-board-micro) nothing runs on
the host: the bundle's full-int8 files (`edgeode export RUN --quantize int8`) are checked against the
board's SRAM and flash with the figures measured at export in TensorFlow Lite Micro (arena + RK state
+ the board's runtime share; models + runtime code), the same fit `edgeode pack` uses; accuracy is the
one measured in TFLM; latency and energy are ESTIMATES from int8 MACs x the board's cycles per MAC
(sources: `edgeode devices show NAME`). --mode is loop (default) or fused there.

On any machine other than a calibrated device (`edgeode devices calibrate --save NAME` on the
device itself), time-derived figures are ESTIMATES: host measurements scaled by the ratio of the
host's single-thread SGEMM throughput to the device's (see `edgeode devices show NAME`). Under
emulation (QEMU) no device timings are reported.

A series bundle (an ODE-RNN, `edgeode train --model odernn`) is timed per observation: one sample
--gap seconds after the previous one (default: the bundle's max_step, one solver step), i.e. the
solve across the gap and the GRU update; its figures read "per observation".
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("profile", help="measure a bundle for a device profile", description=HELP,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", metavar="BUNDLE", help="bundle directory (from `edgeode export`)")
    add_device(p, required=True)
    p.add_argument("--backend", default="auto", choices=("auto", "onnxruntime", "litert", "tflite-runtime"),
                   help="inference backend (default auto: onnxruntime if the bundle has ONNX)")
    p.add_argument("--mode", default=None, choices=("fused", "loop"),
                   help="fused: the whole solve in one graph; loop: numpy solver loop around the field (default fused; "
                        "loop on a microcontroller)")
    p.add_argument("--precision", default="float32", choices=("float32", "float16", "int8-dynamic", "int8-weight"),
                   help="which artifacts of the bundle to measure (default float32)")
    p.add_argument("--threads", type=int, default=None, help="backend threads (default for estimates: 1, pinned, taking turns on the two quietest CPUs, matching the "
                        "single-thread SGEMM scaling; on a calibrated device: min(device cores, host CPUs))")
    p.add_argument("--runs", type=int, default=None,
                   help="timed inferences (default: at least 50 and 2 s of them, at most 20000 — enough for a stable "
                        "estimate)")
    p.add_argument("--warmup", type=int, default=5, help="untimed warm-up inferences (default 5)")
    p.add_argument("--batch", type=int, default=1, help="batch size of each inference (default 1)")
    p.add_argument("--gap", type=float, default=None, metavar="SECONDS",
                   help="series bundle: seconds between the timed observations (default: its max_step, one solver "
                        "step; a longer gap takes ceil(gap / max_step) steps)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds before the measured process is killed (default 300)")
    p.add_argument("--no-macs", action="store_true", help="skip counting MACs (counting them reads the ONNX graph with the onnx package)")
    add_expect_digest(p)
    add_json(p, "one object (keys carry units: _mb, _ms, _mj)")
    add_quiet(p)
    p.set_defaults(func=run)
    return p


def _fmt(v, unit: str = "", digits: int = 2) -> str:
    if v is None:
        return "n/a"
    return f"{v:.{digits}f}{unit}"


def _spread(d: dict) -> str:
    u = d.get("latency_uncertainty")
    if not u:
        return ""
    return f" (+-{100 * u['p50_relative']:.0f}% measured; scaling model about x0.5-x2)"


def _basis(d: dict) -> str:
    b = d.get("host_basis")
    if not b:
        return f"estimate basis     {d.get('latency_basis', 'all runs')}"
    lo, hi = b["interval_ms"]
    return (f"estimate basis     host {_fmt(b['latency_ms']['p50'], ' ms', 3)} (95% CI {lo:.3f}-{hi:.3f} ms) = "
            f"{d['latency_basis']}")


def _steps(n: int) -> str:
    return f"{n} step" if n == 1 else f"{n} steps"


def render(d: dict) -> str:
    """The human-readable report of a profile dict."""
    est = "ESTIMATE" if d["estimate"] else "MEASURED"
    lines = [f"{d['arch']} bundle {d['bundle']} on {d['device_display_name']} ({d['device']})",
             f"figures: {d['figures']}"]
    sc = d["scaling"]
    if sc.get("factor") and d["estimate"]:
        lines.append(f"  scaling: host SGEMM {sc['host_sgemm_gflops_1t']:.1f} GFLOP/s / device {sc['device_gflops_1t']:g} "
                     f"GFLOP/s = x{sc['factor']:.2f} ({sc['device_gflops_source'].split(';')[0]}; "
                     f"sources: `edgeode devices show {d['device']}`)")
        ref = sc.get("host_reference") or {}
        if ref:
            lines.append(f"  host SGEMM measured {ref['measured_at']}, cached in {ref['cache_file'] or '(not cached)'} "
                         "(delete it to measure again)")
    pinned = "" if d.get("pinned_cpu") is None else f" (pinned to CPU {d['pinned_cpu']})"
    if d.get("timed_cpus") and d.get("pinned_cpu") is not None:
        pinned = (f" (pinned, taking turns on CPUs {', '.join(map(str, d['timed_cpus']))}; "
                  f"estimate from CPU {d['pinned_cpu']}, the less disturbed)")
    lines += [f"backend {d['backend']}, mode {d['mode']}, {d['threads']} thread(s){pinned}, batch {d['batch']}, "
              f"{d['runs']} runs after {d['warmup']} warm-up",
              f"bundle size        {_fmt(d['bundle_size_mb'], ' MB', 3)}"]
    if d.get("error"):
        lines.append(f"could not run on the host: {d['error']}")
    else:
        lat, host = d["latency_ms"], d["host_latency_ms"]
        unit = d.get("unit", "inference")
        gap = f" across a {d['gap_s']:g} s gap, then the GRU update" if d.get("gap_s") is not None else ""
        lines += [
            f"load time          {_fmt(d['load_time_ms'], ' ms', 1)}" + ("" if not d["estimate"] else " (host, not scaled)"),
            f"peak memory        {_fmt(d['peak_rss_mb'], ' MB', 1)} = runtime floor {_fmt(d['runtime_floor_mb'], ' MB', 1)}"
            f" + model {_fmt(d['model_added_mb'], ' MB', 1)} (host-measured)",
            (f"latency            p50 {_fmt(lat['p50'], ' ms', 3)}{_spread(d)}  p95 {_fmt(lat['p95'], ' ms', 3)}  "
             f"p99 {_fmt(lat['p99'], ' ms', 3)} [{est}]") if lat else "latency            n/a (emulated)",
            f"host latency       p50 {_fmt(host['p50'], ' ms', 3)}  p95 {_fmt(host['p95'], ' ms', 3)}  p99 {_fmt(host['p99'], ' ms', 3)}"
            " (all runs)",
            _basis(d),
            f"field evaluations  {d['field_evaluations']} per {unit}"
            + (f" ({d['tableau']}, {_steps(d['steps'])}{gap})" if d.get("steps") else ""),
            f"CPU time           {_fmt(d['cpu_ms_per_inference'], ' ms', 3)} per {unit} [{est}]; {d['spinning']}",
            f"MACs               {d.get('macs_per_inference'):,} per {unit}" if d.get("macs_per_inference") is not None
            else f"MACs               n/a ({(d.get('macs') or {}).get('note', 'skipped')})",
            f"energy proxy       {_fmt(d['energy_proxy_mj'], ' mJ', 3)} per {unit} for the CPU work; "
            f"{_fmt(d['energy_proxy_with_idle_mj'], ' mJ', 3)} in total with the board's idle power [{est}]",
            f"  energy model     {d['energy_model']}",
            f"RAPL energy        {_fmt(d['rapl_energy_mj_per_inference'], ' mJ', 3)} (host) — {d['rapl']}",
        ]
    lines.append(f"verdict            {d['fits']['message']}")
    lines += [f"note: {n}" for n in d.get("notes", [])]
    return "\n".join(lines)


def _range(d: dict, unit: str, digits: int = 3) -> str:
    return f"{d['typical']:.{digits}g}{' ' + unit if unit else ''} (range {d['low']:.{digits}g} to {d['high']:.{digits}g})"


def render_mcu(d: dict) -> str:
    """The human-readable report of a microcontroller profile dict."""
    f, e = d["mcu_fit"], d["mcu_estimate"]
    acc = d.get("accuracy") or {}
    lines = [f"{d['arch']} bundle {d['bundle']} on {d['device_display_name']} ({d['device']})",
             f"figures: {d['figures']}",
             f"int8 files ({d['mode']} mode, {d['kernels']}):"]
    for n in f["nets"]:
        lines.append(f"  {n['role']:8s} {n['path']:28s} flash {n['flash_bytes']:>9,} B  arena {n['arena_measured_bytes']:>9,} B "
                     f"measured -> {n['arena_bytes']:,} B with {100 * f['arena_margin']:.0f}% margin")
    lines += [
        f"RAM                {f['ram_needed_bytes']:,} B = arenas {f['arena_bytes']:,} + RK state {f['rk_state_bytes']:,} "
        f"+ buffers {f['buffer_bytes']:,} + runtime {f['runtime_ram_bytes']:,}, of {f['ram_board_bytes']:,} B",
        f"flash              {f['flash_bytes']:,} B = models {f['model_flash_bytes']:,} + runtime code "
        f"{f['runtime_flash_bytes']:,}, of {f['flash_board_bytes']:,} B",
    ]
    if acc.get("int8") is not None:
        lines.append(f"accuracy           int8 {100 * acc['int8']:.1f}% (float32 {100 * (acc['float32'] or 0):.1f}%) on "
                     f"{acc['samples']} {acc['split']} {acc.get('unit', 'samples')}, measured in {acc['interpreter']}")
    lines += [
        f"MACs               {e['macs']:,} per {d.get('unit', 'inference')} (+ {e['elements']:,} other-op elements)"
        + (f"; field x {d['field_evaluations']} ({d['tableau']}, {_steps(d['steps'])})" if d.get("field_evaluations") else ""),
        f"latency            {_range(d['latency_ms'], 'ms')} [ESTIMATE]",
        f"energy             {_range(d['energy_mj'], 'mJ')} at {e['power_w']:g} W [ESTIMATE]",
        f"  cycles/MAC       {_range(e['cycles_per_mac'], '', 3)}: {e['sources'].get('mcu.cycles_per_mac', '')}",
        f"  cycles/element   {_range(e['cycles_per_element'], '', 3)}: {e['sources'].get('mcu.cycles_per_element', '')}",
        f"verdict            {d['fits']['message']}",
    ]
    lines += [f"note: {n}" for n in d.get("notes", [])]
    return "\n".join(lines)


def run(args) -> int:
    from edgeode.devices.profiler import profile_bundle
    from edgeode.runtime.bounded import check_timeout

    check_timeout(args.timeout)
    if args.expect_digest is not None:
        from edgeode.runtime.digest import check_digest

        check_digest(args.bundle, args.expect_digest)
    report = profile_bundle(args.bundle, args.device, backend=args.backend, mode=args.mode, threads=args.threads,
                            runs=args.runs, warmup=args.warmup, batch=args.batch, precision=args.precision,
                            timeout=args.timeout, count_macs=not args.no_macs, progress=not args.quiet, gap=args.gap)
    d = report.to_dict()
    print(json.dumps(d, indent=2) if args.json else (render_mcu(d) if d.get("device_class") == "mcu" else render(d)))
    return 0
