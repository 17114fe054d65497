"""Where does an int8 ODE-Net lose accuracy? Each full-int8 file of a bundle, measured in TFLM against torch.

For the first ``--samples`` test images of the run's own split, with torch's float32 model as the
reference:

* per file (encoder, field, head): the relative RMS error of the int8 file's output against torch on
  torch's own inputs (the field on every Runge-Kutta stage input of torch's solve), and its max abs error;
* accuracy with one int8 file swapped into the float32 torch pipeline at a time, then all three (the loop
  a board runs: the solver in float32 between the int8 files).

    python3 benchmarks/int8_error.py RUN BUNDLE                 # BUNDLE from `edgeode export RUN --quantize int8`
    python3 benchmarks/int8_error.py RUN BUNDLE --samples 500

Needs torch (the reference) and tflite-micro (the int8 files run in the real TFLM interpreter).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from common import HelpFormatter, log, machine_info, machine_markdown, markdown_table, write_results

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _chunked(session, feeds: dict[str, np.ndarray], batch: int) -> np.ndarray:
    """Run ``session`` over the leading axis of the batched ``feeds`` in its fixed batch (scalars passed as is)."""
    n = next(v.shape[0] for v in feeds.values() if v.ndim > 0)
    outs = []
    for i in range(0, n, batch):
        outs.append(session.run({k: (v[i:i + batch] if v.ndim > 0 else v) for k, v in feeds.items()})[0])
    return np.concatenate(outs)


def _rel(got: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """(relative RMS error, max abs error) of ``got`` against ``ref``."""
    d = got.astype(np.float64) - ref
    return float(np.sqrt(np.mean(d ** 2)) / max(np.sqrt(np.mean(ref.astype(np.float64) ** 2)), 1e-12)), float(np.abs(d).max())


def measure(run_dir: Path, bundle: Path, samples: int) -> dict:
    import torch

    from edgeode.runtime.backends import open_session
    from edgeode.runtime.manifest import Manifest
    from edgeode.tableaus import get_tableau
    from edgeode.train.checkpoint import load_run
    from edgeode.train.data import load_dataset
    from edgeode.train.solver import solve

    run = load_run(run_dir)
    cfg = run.config
    data = load_dataset(cfg.data, cfg.data_path, cfg.seed)
    x, y = data.x_test[:samples], data.y_test[:samples].numpy()
    n = x.shape[0]
    man = Manifest.read(bundle)
    model = run.model
    block = model.block
    tab = get_tableau(cfg.model.solver)
    sess, batch = {}, {}
    for role in ("encoder", "field", "head"):
        art = man.find(role, "tflite", "int8")
        sess[role] = open_session("tflm", bundle / art.path, art)
        batch[role] = int(art.inputs[[i.name for i in art.inputs].index("h" if role != "encoder" else "x")].shape[0])
    n = n // max(batch.values()) * max(batch.values())
    x, y = x[:n], y[:n]
    calls: list[tuple[float, torch.Tensor]] = []

    def recorded(t, h):
        calls.append((float(t), h.detach().clone()))
        return block.field(t, h)

    with torch.no_grad():
        h0 = model.encoder(x)
        hT = solve(recorded, h0, tab, cfg.model.t0, cfg.model.t1, cfg.model.steps)
        logits = model.head(hT)
    rows = {}
    h0_q = _chunked(sess["encoder"], {"x": x.numpy()}, batch["encoder"])
    rows["encoder"] = _rel(h0_q, h0.numpy())
    f_err = []
    for t, h in calls:
        with torch.no_grad():
            ref = block.field(torch.tensor(t), h).numpy()
        got = _chunked(sess["field"], {"t": np.array(t, np.float32), "h": h.numpy()}, batch["field"])
        f_err.append(_rel(got, ref))
    rows["field"] = (float(np.sqrt(np.mean([e[0] ** 2 for e in f_err]))), max(e[1] for e in f_err))
    rows["head"] = _rel(_chunked(sess["head"], {"h": hT.numpy()}, batch["head"]), logits.numpy())

    def field_q(t, h):
        return torch.from_numpy(_chunked(sess["field"], {"t": np.array(float(t), np.float32), "h": h.numpy()},
                                         batch["field"]))

    def pipeline(enc: bool, fld: bool, head: bool) -> float:
        with torch.no_grad():
            h = torch.from_numpy(h0_q) if enc else h0
            h = solve(field_q if fld else block.field, h, tab, cfg.model.t0, cfg.model.t1, cfg.model.steps)
            out = _chunked(sess["head"], {"h": h.numpy()}, batch["head"]) if head else model.head(h).numpy()
        return float((out.argmax(1) == y).mean())

    acc = {"float32 (torch)": float((logits.numpy().argmax(1) == y).mean()),
           "int8 encoder only": pipeline(True, False, False), "int8 field only": pipeline(False, True, False),
           "int8 head only": pipeline(False, False, True), "int8 loop (all three)": pipeline(True, True, True)}
    return {"run": str(run_dir), "bundle": str(bundle), "samples": int(n), "data": cfg.data,
            "model": {"width": cfg.model.width, "steps": cfg.model.steps, "solver": cfg.model.solver},
            "error": {k: {"relative_rms": v[0], "max_abs": v[1]} for k, v in rows.items()},
            "field_stage_calls": len(calls), "accuracy": acc,
            "bundle_accuracy": man.mcu.accuracy if man.mcu is not None else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("run", type=Path, help="run directory (edgeode train -o RUN)")
    parser.add_argument("bundle", type=Path, help="its int8 bundle (edgeode export RUN -o BUNDLE --quantize int8)")
    parser.add_argument("--samples", type=int, default=200, help="test images (from the start of the run's test split)")
    parser.add_argument("--name", default="int8_error", help="results file name under --out")
    parser.add_argument("--out", type=Path, default=None, help="results directory (default benchmarks/results)")
    args = parser.parse_args()
    log(f"int8 error of {args.bundle} against torch on {args.samples} test images")
    res = measure(args.run, args.bundle, args.samples)
    info = machine_info()
    err = markdown_table(["file", "relative RMS error vs torch", "max abs error"],
                         [[k, f"{v['relative_rms']:.4f}", f"{v['max_abs']:.4f}"] for k, v in res["error"].items()])
    acc = markdown_table(["pipeline", "accuracy"], [[k, f"{v:.4f}"] for k, v in res["accuracy"].items()])
    md = "\n".join([f"# int8 error per file ({res['data']}, width {res['model']['width']}, {res['model']['solver']} x "
                    f"{res['model']['steps']} steps)", "", machine_markdown(info), "",
                    f"Command: `python3 benchmarks/int8_error.py {' '.join(sys.argv[1:])}`; {res['samples']} test images; "
                    f"the field over all {res['field_stage_calls']} stage inputs of torch's solve.", "", err, "", acc, ""])
    write_results(args.name, {"meta": info, **res}, md, args.out)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
