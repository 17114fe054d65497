"""``edgeode devices``: list, show and calibrate device profiles."""

from __future__ import annotations

import argparse
import json
import sys

from edgeode.commands.options import add_json, add_out, device_name

HELP = """\
List the device profiles (CPU, RAM, storage, power, runtimes; every figure with its source),
show one, or measure this machine as a profile.

  edgeode devices                      table of all devices
  edgeode devices --json               the same as JSON
  edgeode devices show pi-zero-2w      one profile with the sources of its figures
  edgeode devices calibrate --save my-pi --like pi-4b
                                       measure this machine (run it on the device) and save it

RAM variants are NAME:VARIANT (e.g. pi-4b:8gb). User profiles live in $EDGEODE_DEVICES_DIR or
~/.config/edgeode/devices and override shipped ones of the same name.
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("devices", help="list, show and calibrate device profiles", description=HELP,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_json(p, "the table")
    sub = p.add_subparsers(dest="devices_command", metavar="{show,calibrate}")
    show = sub.add_parser("show", help="show one device profile",
                          description="Show one device profile: CPU, RAM (and RAM variants), storage, power model, "
                                      "runtimes, Python wheel platforms, OS notes, and the source of every figure.")
    show.add_argument("name", type=device_name, help="device name, e.g. pi-4b or pi-4b:8gb")
    add_json(show, "the profile", dest="show_json")
    cal = sub.add_parser(
        "calibrate", help="measure this machine (cores, clock, RAM, SGEMM GFLOP/s, RAPL power)",
        description="Measure the machine edgeode runs on (CPU cores and clock, RAM, single-thread SGEMM GFLOP/s, "
                    "RAPL power where readable) and print it as a device profile. Run it on the device itself: "
                    "`edgeode profile --device NAME` then reports measured figures instead of estimates. "
                    "Without --save or -o/--out the profile is only printed.")
    cal.add_argument("--save", metavar="NAME",
                     help="save the profile as NAME.json in the user profile directory ($EDGEODE_DEVICES_DIR or "
                          "~/.config/edgeode/devices); NAME: letters, digits and '-'")
    add_out(cal, metavar="FILE",
            help="write the profile to FILE instead; FILE must end in .json and its stem is the profile name")
    cal.add_argument("--like", metavar="DEVICE", type=device_name,
                     help="shipped profile of this board: its power figures are used when RAPL is not readable")
    cal.add_argument("--seconds", type=float, default=2.0, help="seconds per RAPL power measurement (default 2)")
    add_json(cal, "the profile", dest="show_json")
    p.set_defaults(func=run)
    return p


def _row(p) -> list[str]:
    return [p.name, p.device_class, f"{p.cpu.cores}x {p.cpu.arch} {p.cpu.clock_ghz:g} GHz", _mb(p.ram_mb),
            _mb(p.storage_mb), f"{p.power.idle_w:g}/{p.power.load_w:g}", ",".join(p.runtimes),
            "yes" if p.python else "no"]


def _mb(mb: float) -> str:
    if mb < 1:
        return f"{mb * 1024:g} KB"
    if mb >= 1024 and mb % 1024 == 0:
        return f"{mb / 1024:g} GB"
    return f"{mb:g} MB"


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _estimates(p) -> list[str]:
    """How `edgeode profile --device NAME` turns host timings into this device's figures, in words."""
    if p.mcu is not None:
        m = p.mcu
        return [
            f"  mcu            {m.sram_bytes:,} B for static arrays (arenas, RK state), runtime code {m.runtime_flash_bytes:,} B "
            f"of flash; int8 kernels {m.kernels}",
            "  estimates      `edgeode profile BUNDLE --device NAME` on a full-int8 bundle: memory from the figures the",
            "                 export measured in TFLM; latency = (int8 MACs x cycles/MAC + other ops' elements x",
            f"                 cycles/element) / {p.cpu.clock_ghz * 1e3:g} MHz, cycles/MAC {'/'.join(f'{v:g}' for v in m.cycles_per_mac)}, "
            f"cycles/element {'/'.join(f'{v:g}' for v in m.cycles_per_element)}",
            f"                 (low/typical/high; sources below); energy = latency x {p.power.load_w:g} W.",
        ]
    if p.calibrated:
        return ["  estimates      none on the machine this profile was measured on (calibrated): figures there are",
                "                 measured; elsewhere host timings are scaled as for any profile (below)"]
    from edgeode.devices.hostinfo import cached_host_reference

    ref = cached_host_reference()
    host = (f"this host: {ref.gflops:.1f} GFLOP/s (x{ref.gflops / p.cpu.gflops_1t:.2f}), measured {ref.measured_at}, "
            f"cached in {ref.cache_file}" if ref else
            "this host's figure is measured once (about 3 s) on the first profile and cached per machine")
    return [
        "  estimates      profiling on another machine gives ESTIMATES: device latency = host latency x (host",
        f"                 single-thread SGEMM GFLOP/s / this device's {p.cpu.gflops_1t:g} GFLOP/s);",
        f"                 {host}.",
        "                 The host latency is measured as the ratio's SGEMM is: one backend thread, pinned,",
        "                 taking turns on the host's two least busy CPUs and keeping the runs of the CPU they",
        "                 were fastest on (the estimate is the device running the model on one core;",
        "                 --threads N times N threads instead, less steadily, thread scaling not modelled). It is",
        "                 the 1st percentile of at least 2 s of runs: other processes only add time to a run, so",
        "                 the fastest runs are the model alone, as on the device (a burst of other work that slows",
        "                 the whole window still shows; the profile then says the host was busy). The printed",
        "                 +-% is that figure's 95% confidence interval and the SGEMM rounds' spread. The model",
        "                 itself is good to about x0.5-x2 for conv/GEMM-bound models and",
        "                 an upper bound for tiny overhead-bound ones (memory bandwidth, caches and kernel choice",
        "                 are not modelled); `edgeode devices calibrate` on the device replaces estimates with",
        "                 measurements. Energy = CPU time x (load_w - idle_w) / cores, plus idle_w x p50 latency",
        "                 for the total.",
    ]


def _show(p) -> str:
    lines = [f"{p.display_name} ({p.name}){'  [calibrated]' if p.calibrated else ''}",
             f"  class          {p.device_class}",
             f"  cpu            {p.cpu.cores}x {p.cpu.arch} at {p.cpu.clock_ghz:g} GHz  {p.cpu.model}",
             f"  sgemm 1 thread {p.cpu.gflops_1t:g} GFLOP/s",
             f"  ram            {_mb(p.ram_mb)} ({_mb(p.os_reserved_mb)} kept by the OS)"
             + (f"; variants: {', '.join(f'{p.name}:{k}' for k in p.ram_variants)}" if p.ram_variants else ""),
             f"  storage        {_mb(p.storage_mb)}",
             f"  power          {p.power.idle_w:g} W idle, {p.power.load_w:g} W all cores busy",
             f"  runtimes       {', '.join(p.runtimes)}",
             f"  python         {'yes' if p.python else 'no'}"
             + (f" (wheels: {', '.join(p.pip_platforms)})" if p.pip_platforms else ""),
             f"  os notes       {p.os_notes}",
             *_estimates(p),
             "  sources:"]
    lines += [f"    {k}: {v}" for k, v in sorted(p.sources.items())]
    return "\n".join(lines)


def run(args) -> int:
    from edgeode.devices.profiles import list_profiles, load_profile

    cmd = getattr(args, "devices_command", None)
    if cmd == "show":
        p = load_profile(args.name)
        print(json.dumps(p.to_dict(), indent=2) if args.show_json or args.json else _show(p))
        return 0
    if cmd == "calibrate":
        from pathlib import Path

        from edgeode.devices.calibrate import calibrate, save_profile
        from edgeode.errors import ConfigError

        # check what can be checked before the measurement, not after it
        if args.out and Path(args.out).suffix != ".json":
            raise ConfigError(f"--out {args.out}: the profile file must end in .json (its stem is the profile "
                              f"name), e.g. --out {Path(args.out).with_suffix('.json')}")
        if not args.seconds > 0:
            raise ConfigError(f"--seconds must be a positive number of seconds per power measurement, got {args.seconds}")
        if args.like:
            load_profile(args.like)
        name = args.save or (args.out and Path(args.out).stem) or "this-device"
        print("measuring this machine (SGEMM, RAM, clock, RAPL power if readable)...", file=sys.stderr)
        p = calibrate(name, like=args.like, seconds=args.seconds)
        print(json.dumps(p.to_dict(), indent=2) if args.show_json or args.json else _show(p))
        if args.save or args.out:
            path = save_profile(p, args.out)
            from edgeode.devices.profiles import user_dir

            if path.absolute().parent == user_dir().absolute():
                print(f"saved {path}; use it with --device {p.name}", file=sys.stderr)
            else:
                print(f"saved {path}; to use it with --device {p.name}, put it in {user_dir()} or set "
                      f"EDGEODE_DEVICES_DIR={path.absolute().parent}", file=sys.stderr)
        return 0
    profiles = list_profiles()
    if args.json:
        print(json.dumps([p.to_dict() for p in profiles], indent=2))
        return 0
    header = ["name", "class", "cpu", "ram", "storage", "power W idle/load", "runtimes", "python"]
    print(_table([_row(p) for p in profiles], header))
    print("\n`edgeode devices show NAME` shows a profile with the source of every figure.")
    return 0
