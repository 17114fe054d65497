"""``edgeode compare``: ODE-Net vs RK-Net vs ResNet vs VGG on a device profile, report and plots."""

from __future__ import annotations

import argparse
import json
import sys

from edgeode.commands.options import add_device, add_json, add_out, add_quiet

HELP = """\
Train ODE-Net (adjoint), RK-Net (backprop through the solver), ResNet and VGG on the same data,
export each to an ONNX bundle and profile it for --device: accuracy, parameters, bundle size, peak
memory, latency, energy proxy. Then the ImageNet scale (224x224): ResNet-18, ResNet-50, VGG-16 and
ODE counterparts, random weights, footprint only (parameters, ONNX size, MACs, peak memory, fits
verdict per device). Writes REPORT_DIR/report.md, report.json and PNG plots.

With --mcu, the ODE-Net, ResNet and VGG are also exported as full-int8 bundles measured in TensorFlow
Lite Micro and reported on the Nano 33 BLE Sense and the ESP32-S3 (flash, RAM, fits, accuracy in
TFLM, estimated latency and energy; a table and mcu_boards.png). It adds about 0.5-1.5 min per model
(calibration and TFLM measurements); it needs `pip install 'edgeode[mcu]'`.

Device figures are estimates unless the device profile was calibrated on this machine.
Default run: a few minutes on 2 cores (plus ~1-2 min to export and measure the ImageNet models);
--quick is a tiny configuration for smoke tests.
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("compare", help="ODE-Net vs RK-Net vs ResNet vs VGG on a device: report and plots",
                              description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_device(p, default="pi-zero-2w")
    add_out(p, default="compare-report", metavar="REPORT_DIR",
            help="report directory (default ./compare-report); built beside it and renamed into place "
                        "when complete, replacing an earlier report there (a non-empty directory without "
                        "report.json is refused)")
    p.add_argument("--data", default="digits", choices=("digits", "mnist"),
                   help="training data: scikit-learn 8x8 digits (default, ships) or MNIST IDX files from --data-path")
    p.add_argument("--data-path", default=None, metavar="DIR",
                   help="directory with MNIST IDX files (t10k-*-ubyte[.gz]; needed for --data mnist)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs per model (default 8; 1 with --quick)")
    p.add_argument("--width", type=int, default=None, help="channels of the MNIST-scale models (default 16; 8 with --quick)")
    p.add_argument("--steps", type=int, default=None, help="RK4 steps of ODE-Net/RK-Net (default 4; 2 with --quick)")
    p.add_argument("--runs", type=int, default=None, help="timed inferences per model (default 30; 5 with --quick)")
    p.add_argument("--quick", action="store_true", help="tiny configuration: small models, 1 epoch, ImageNet footprints estimated")
    p.add_argument("--no-imagenet", action="store_true", help="skip the ImageNet-scale footprints")
    p.add_argument("--imagenet-measure", dest="imagenet_measure", action="store_true", default=None,
                   help="export the ImageNet models to ONNX and measure their peak memory (default unless --quick)")
    p.add_argument("--imagenet-estimate", dest="imagenet_measure", action="store_false",
                   help="estimate ImageNet peak memory instead of measuring it")
    p.add_argument("--mcu", action="store_true",
                   help="also export int8 bundles (TFLM) of ODE-Net, ResNet and VGG and report them on microcontrollers")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    add_json(p, "the report (report.json)")
    add_quiet(p)
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from edgeode.compare import CompareConfig, run_compare

    cfg = CompareConfig(device=args.device, out_dir=args.out, data=args.data, data_path=args.data_path,
                        epochs=args.epochs, quick=args.quick, width=args.width, steps=args.steps, runs=args.runs,
                        imagenet=not args.no_imagenet, imagenet_measure=args.imagenet_measure, mcu=args.mcu, seed=args.seed,
                        progress=not args.quiet)
    report = run_compare(cfg)
    out = args.out
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    print(f"wrote {out}/report.md, {out}/report.json and plots: "
          + ", ".join(v for k, v in report["files"].items() if v.endswith(".png")), file=sys.stderr)
    for r in report["mnist_scale"]:
        lat = (r.get("latency_ms") or {}).get("p50")
        print(f"{r['model']:8s} accuracy {100 * (r['accuracy'] or 0):5.1f}%  params {r['parameters']:>9,}  "
              f"peak {r['peak_rss_mb']:.0f} MB  p50 {lat if lat is None else round(lat, 3)} ms (est.)  "
              f"energy {r['energy_proxy_mj'] if r['energy_proxy_mj'] is None else round(r['energy_proxy_mj'], 4)} mJ (proxy)")
    for r in report.get("mcu", []):
        lat = r["latency_ms"]["typical"]
        print(f"{r['model']:8s} int8 {r['mode']:6s} on {r['device']:18s} flash {r['flash_bytes'] / 1024:7.1f} KiB  "
              f"RAM {r['ram_needed_bytes'] / 1024:6.1f} KiB  {'fits' if r['fits'] else 'NO FIT'}  accuracy "
              f"{100 * (r['accuracy_int8'] or 0):5.1f}% (TFLM)  {lat:.3g} ms (est.)")
    ans = report.get("answers", {}).get("vgg16_on_pi_zero_2w")
    if ans:
        print(f"VGG-16 on a Pi Zero 2 W: {ans['message']}")
    return 0
