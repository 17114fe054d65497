"""GroupNorm as onnxruntime runs it: the ways to write it in ONNX, timed interleaved (issue 16, item 1).

The exported field normalises ``[B, 64, 6, 6]`` states with ``GroupNorm(32, 64)``. This script times,
one thread, interleaved so that load hits every variant alike:

* ``decomposition``: the dynamo exporter's lowering (Reshape, InstanceNormalization, Reshape, Mul, Add);
* ``batchnorm-affine``: the same with the affine as one BatchNormalization (what export/onnx_passes.py writes);
* ``GroupNormalization-21``: the single ONNX op (opset 21);
* the statistics alone with InstanceNormalization, LayerNormalization and MeanVarianceNormalization.

Every variant's output is checked against the decomposition's first.

    python3 benchmarks/groupnorm_ops.py [--batch 32] [--repeats 300]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _session(nodes, inits, in_shape, out_shape, opset: int):
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def main(argv: list[str] | None = None) -> int:
    from onnx import helper
    from onnx import numpy_helper as nh

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--groups", type=int, default=32)
    p.add_argument("--size", type=int, default=6, help="height = width of the state")
    p.add_argument("--repeats", type=int, default=300)
    args = p.parse_args(argv)
    b, c, g, s = args.batch, args.channels, args.groups, args.size
    rng = np.random.default_rng(0)
    gamma, beta = rng.standard_normal(c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
    x = rng.standard_normal((b, c, s, s)).astype(np.float32)
    full, grouped = [b, c, s, s], [b, g, c // g * s * s]
    init = {"grp": nh.from_array(np.array(grouped, np.int64), "grp"), "back": nh.from_array(np.array(full, np.int64), "back"),
            "one": nh.from_array(np.ones(g, np.float32), "one"), "zero": nh.from_array(np.zeros(g, np.float32), "zero"),
            "ga": nh.from_array(gamma.reshape(c, 1, 1), "ga"), "be": nh.from_array(beta.reshape(c, 1, 1), "be"),
            "g": nh.from_array(gamma, "g"), "b": nh.from_array(beta, "b"),
            "mu": nh.from_array(np.zeros(c, np.float32), "mu"), "var": nh.from_array(np.ones(c, np.float32), "var"),
            "lns": nh.from_array(np.ones(grouped[2], np.float32), "lns"),
            "lnb": nh.from_array(np.zeros(grouped[2], np.float32), "lnb")}
    norm = [helper.make_node("Reshape", ["x", "grp"], ["r"]),
            helper.make_node("InstanceNormalization", ["r", "one", "zero"], ["n"], epsilon=1e-5),
            helper.make_node("Reshape", ["n", "back"], ["r2"])]

    def pick(*names: str) -> list:
        return [init[n] for n in names]

    variants = {
        "decomposition": _session(norm + [helper.make_node("Mul", ["r2", "ga"], ["m"]),
                                          helper.make_node("Add", ["m", "be"], ["y"])],
                                  pick("grp", "back", "one", "zero", "ga", "be"), full, full, 20),
        "batchnorm-affine": _session(norm + [helper.make_node("BatchNormalization", ["r2", "g", "b", "mu", "var"], ["y"],
                                                              epsilon=0.0)],
                                     pick("grp", "back", "one", "zero", "g", "b", "mu", "var"), full, full, 20),
        "GroupNormalization-21": _session([helper.make_node("GroupNormalization", ["x", "g", "b"], ["y"], epsilon=1e-5,
                                                            num_groups=g)], pick("g", "b"), full, full, 21),
    }
    stats = {
        "stats: InstanceNormalization": _session([helper.make_node("InstanceNormalization", ["x", "one", "zero"], ["y"],
                                                                   epsilon=1e-5)], pick("one", "zero"), grouped, grouped, 20),
        "stats: LayerNormalization": _session([helper.make_node("LayerNormalization", ["x", "lns", "lnb"], ["y"],
                                                                epsilon=1e-5, axis=-1)], pick("lns", "lnb"), grouped, grouped, 20),
        "stats: MeanVarianceNormalization": _session([helper.make_node("MeanVarianceNormalization", ["x"], ["y"], axes=[2])],
                                                     [], grouped, grouped, 20),
    }
    xg = x.reshape(grouped)
    ref = variants["decomposition"].run(None, {"x": x})[0]
    ref_stats = stats["stats: InstanceNormalization"].run(None, {"x": xg})[0]
    feeds = {**{k: x for k in variants}, **{k: xg for k in stats}}
    sessions = {**variants, **stats}
    for name, sess in sessions.items():
        out = sess.run(None, {"x": feeds[name]})[0]
        diff = float(np.abs(out - (ref if name in variants else ref_stats)).max())
        if diff > 1e-3:  # MeanVarianceNormalization has no epsilon: ~3e-5 from it alone
            raise SystemExit(f"{name}: output differs from the decomposition by {diff:.2e}")
        for _ in range(20):
            sess.run(None, {"x": feeds[name]})
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(args.repeats):
        for name, sess in sessions.items():
            start = time.perf_counter()
            sess.run(None, {"x": feeds[name]})
            times[name].append(time.perf_counter() - start)
    print(f"GroupNorm({g}, {c}) on [{b}, {c}, {s}, {s}], onnxruntime one thread, {args.repeats} interleaved calls each:")
    for name, t in times.items():
        print(f"  {name:34s} median {np.median(t) * 1e6:8.1f} us   p10 {np.percentile(t, 10) * 1e6:8.1f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
