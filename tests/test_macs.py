"""MAC counts from ONNX graphs match hand counts (Conv, Gemm, MatMul, Loop)."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgeode.devices.macs import count_macs  # noqa: E402


def _model(nodes, inputs, inits, opset=17):
    g = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)],
                          inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _w(name, shape):
    return numpy_helper.from_array(np.zeros(shape, np.float32), name)


def test_conv_hand_count():
    # [N,3,8,8] -> 4 filters 3x3, pad 1: out [N,4,8,8]; each output = 3*3*3 = 27 MACs
    m = _model([helper.make_node("Conv", ["x", "W"], ["y"], pads=[1, 1, 1, 1])],
               [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])], [_w("W", (4, 3, 3, 3))])
    assert count_macs(m, batch=1).total == 4 * 8 * 8 * 27
    assert count_macs(m, batch=2).total == 2 * 4 * 8 * 8 * 27


def test_strided_grouped_conv():
    # depthwise: 8 channels, group 8, 3x3 stride 2 on 10x10 -> 4x4 (no pad): 8*4*4 outputs x 9 MACs
    m = _model([helper.make_node("Conv", ["x", "W"], ["y"], strides=[2, 2], group=8)],
               [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 10, 10])], [_w("W", (8, 1, 3, 3))])
    assert count_macs(m).total == 8 * 4 * 4 * 9


def test_gemm_and_matmul():
    m = _model([helper.make_node("Gemm", ["x", "W", "b"], ["h"], transB=1), helper.make_node("MatMul", ["h", "V"], ["y"])],
               [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 20])],
               [_w("W", (30, 20)), _w("b", (30,)), _w("V", (30, 5))])
    c = count_macs(m, batch=4)
    assert c.by_op == {"Gemm": 4 * 20 * 30, "MatMul": 4 * 30 * 5}
    assert c.total == 4 * 20 * 30 + 4 * 30 * 5 and c.complete


def _loop_model(trip_const: int | None):
    body = helper.make_graph(
        [helper.make_node("MatMul", ["h_in", "B"], ["h_out"]), helper.make_node("Identity", ["c_in"], ["c_out"])], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("c_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("h_in", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []), helper.make_tensor_value_info("h_out", TensorProto.FLOAT, None)])
    inits = [_w("B", (5, 5))]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 5])]
    if trip_const is None:
        inputs.append(helper.make_tensor_value_info("M", TensorProto.INT64, []))
    else:
        inits.append(numpy_helper.from_array(np.array(trip_const, np.int64), "M"))
    return _model([helper.make_node("Loop", ["M", "", "x"], ["y"], body=body)], inputs, inits)


def test_loop_body_counted_per_trip():
    # body: [3,5] x [5,5] = 75 MACs per trip
    assert count_macs(_loop_model(None), batch=3, loop_trips=7).total == 7 * 75
    assert count_macs(_loop_model(6), batch=3).total == 6 * 75  # constant trip count read from the graph
    unknown = count_macs(_loop_model(None), batch=3)
    assert not unknown.complete and "trip count" in unknown.unknown[0]


def test_head_after_a_loop_is_counted():
    # the solve's final state gets the initial state's shape, so the Gemm head after it is counted:
    # 6 trips x [3,5]x[5,5] = 6 x 75, then the head [3,5] x [5,10] = 150
    m = _loop_model(6)
    m.graph.node.append(helper.make_node("Gemm", ["y", "H"], ["logits"], transB=1))
    m.graph.initializer.append(_w("H", (10, 5)))
    m.graph.output[0].name = "logits"
    c = count_macs(m, batch=3)
    assert c.complete, c.unknown
    assert c.by_op == {"MatMul": 6 * 75, "Gemm": 3 * 5 * 10}
