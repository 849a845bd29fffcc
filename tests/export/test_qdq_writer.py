"""The lean Q/DQ writer on a hand-made two-GEMM graph with external weights (seconds, no export): the
calibrated range is the max over every sample, weight scales are per output channel, the Q/DQ sit in
front of the planned GEMM only, and an int8 graph at fp32 remainder leaves the weights file as it was."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from gr00t_trt.base.errors import ExportError
from gr00t_trt.export.graph_check import ort_session
from gr00t_trt.export.qdq_writer import activation_ranges, insert_qdq, qdq_inputs, symmetric_scale
from gr00t_trt.export.quantize import _quantize_lean


def _graph(folder):
    """x [2, 4] → MatMul(W1 [4, 3]) → h → MatMul(W2 [3, 2]) → y; weights in ``g.onnx.data``."""
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((4, 3)).astype(np.float32) * np.array([1, 10, 0.1], np.float32)
    w2 = rng.standard_normal((3, 2)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"], "first"), helper.make_node("MatMul", ["h", "w2"], ["y"], "second")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 2])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    path = folder / "g.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location="g.onnx.data", size_threshold=0)
    return path, w1, w2


def test_ranges_are_the_max_over_every_sample_and_weights_are_per_channel(tmp_path):
    path, w1, _ = _graph(tmp_path)
    feeds = [{"x": np.full((2, 4), v, np.float32)} for v in (1.0, -3.0, 2.0)]
    ranges = activation_ranges(path, ["x", "h"], feeds)
    assert ranges["x"] == 3.0  # the second sample's, not the last one's
    assert ranges["h"] == pytest.approx(float(np.abs(np.full((1, 4), -3.0) @ w1).max()), rel=1e-6)
    model = onnx.load(str(path), load_external_data=False)
    assert qdq_inputs(model, ["second"]) == (["h"], ["w2"])
    assert insert_qdq(model, tmp_path, ["first"], ranges) == 2
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer if t.name.endswith(("_scale", "_point"))}
    np.testing.assert_array_equal(inits["w1_scale"], (np.abs(w1).max(axis=0) / 127).astype(np.float32))
    assert inits["x_scale"] == np.float32(3.0 / 127) and inits["x_zero_point"].dtype == np.int8
    ops = [(n.op_type, n.name) for n in model.graph.node]
    assert ops == [("QuantizeLinear", "x_QuantizeLinear"), ("DequantizeLinear", "x_DequantizeLinear"),
                   ("QuantizeLinear", "w1_QuantizeLinear"), ("DequantizeLinear", "w1_DequantizeLinear"),
                   ("MatMul", "first"), ("MatMul", "second")]
    weight_dq = model.graph.node[3]
    assert [a.i for a in weight_dq.attribute if a.name == "axis"] == [1]
    assert list(model.graph.node[4].input) == ["x_DequantizeLinear_Output", "w1_DequantizeLinear_Output"]
    assert list(model.graph.node[5].input) == ["h", "w2"]  # not planned: untouched


def test_zero_range_gives_scale_one_and_a_missing_gemm_is_one_line(tmp_path):
    np.testing.assert_array_equal(symmetric_scale(np.array([0.0, 127.0])), np.array([1.0, 1.0], np.float32))
    path, _, _ = _graph(tmp_path)
    with pytest.raises(ExportError, match=r"^GEMM 'third' is not a top-level node of the graph"):
        qdq_inputs(onnx.load(str(path), load_external_data=False), ["first", "third"])


def test_int8_at_fp32_rewrites_the_graph_only_and_runs(tmp_path):
    from gr00t_trt.export.quantize import GemmNode

    path, w1, w2 = _graph(tmp_path)
    data = (tmp_path / "g.onnx.data").read_bytes()
    feeds = [{"x": np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)}]
    plan = [GemmNode("first", "a", False), GemmNode("second", "b", False)]
    got = _quantize_lean(path, onnx.load(str(path), load_external_data=False), plan, feeds, "int8", "fp32")
    assert got == {"first": "a", "second": "b"}
    assert (tmp_path / "g.onnx.data").read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.onnx", "g.onnx.data"]
    y = ort_session(path, "int8").run(None, feeds[0])[0]  # the runtime's session: exact int8 GEMMs
    x = feeds[0]["x"]

    def fake(v, scale):  # what Q → DQ computes: round half to even, saturate to int8
        return np.clip(np.round(v / scale), -128, 127) * scale

    h = fake(x, np.abs(x).max() / 127) @ fake(w1, np.abs(w1).max(axis=0) / 127)
    want = fake(h, np.abs(x @ w1).max() / 127) @ fake(w2, np.abs(w2).max(axis=0) / 127)
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)
