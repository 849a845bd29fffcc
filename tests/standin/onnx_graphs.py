"""Tiny hand-made ONNX graphs for build, parser and audit tests."""

from __future__ import annotations

from pathlib import Path


def make_onnx(path: Path, kind: str) -> Path:
    """A one-GEMM ONNX graph asking for ``kind``: fp32 | fp16 | fp8 (Q/DQ) | bad (an unknown operator)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    dtype = {"fp16": TensorProto.FLOAT16}.get(kind, TensorProto.FLOAT)
    np_dtype = np.float16 if kind == "fp16" else np.float32
    x = helper.make_tensor_value_info("x", dtype, ["B", 8])
    y = helper.make_tensor_value_info("y", dtype, ["B", 4])
    w = numpy_helper.from_array(np.ones((8, 4), np_dtype), "w")
    nodes, inits = [], [w]
    source = "x"
    if kind == "fp8":
        inits += [numpy_helper.from_array(np.array(0.1, np.float32), "scale"),
                  helper.make_tensor("zp", TensorProto.FLOAT8E4M3FN, [], [0])]
        nodes += [helper.make_node("QuantizeLinear", ["x", "scale", "zp"], ["xq"], name="quant"),
                  helper.make_node("DequantizeLinear", ["xq", "scale"], ["xdq"], name="dequant")]
        source = "xdq"
    if kind == "bad":
        nodes.append(helper.make_node("FancyOp", ["x"], ["xf"], name="fancy_node", domain="com.example"))
        source = "xf"
    nodes.append(helper.make_node("MatMul", [source, "w"], ["y"], name="gemm_node"))
    graph = helper.make_graph(nodes, "g", [x], [y], inits)
    opsets = [helper.make_opsetid("", 21)] + ([helper.make_opsetid("com.example", 1)] if kind == "bad" else [])
    model = helper.make_model(graph, opset_imports=opsets, ir_version=10)
    onnx.save(model, str(path))
    return path
