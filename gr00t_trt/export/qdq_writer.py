"""The lean Q/DQ writer: int8 / fp8 Q/DQ in front of the planned GEMMs of an fp32 graph, written by us in
the structure ModelOpt 0.47 writes, with a peak RAM of about one copy of the graph.

What ModelOpt writes (inspected on the ``small`` preset, opset 21; its fp8 mode is its int8 mode followed
by a scale conversion):

- ONNX Runtime's static QDQ quantiser with ``AddQDQPairToWeight``: a planned GEMM's weight stays a float
  initializer ``W`` [K, N] behind ``QuantizeLinear → DequantizeLinear`` with ``axis=1``, one scale per
  output channel ``max|W[:, n]| / 127`` (float32 [N]) and an INT8 zero point of zeros [N]; every activation
  input (both operands of an attention matmul) gets one per-tensor pair, scale ``max|x| / 127`` over all
  calibration samples (max calibration), scalar INT8 zero point 0; a zero range gives scale 1. Names:
  ``{t}_QuantizeLinear`` → ``{t}_QuantizeLinear_Output`` → ``{t}_DequantizeLinear`` →
  ``{t}_DequantizeLinear_Output``, scale ``{t}_scale``, zero point ``{t}_zero_point``, the Q and the DQ
  sharing both initializers. A tensor read by several planned GEMMs has one pair for all of them; other
  readers keep the float tensor.
- remainder fp16 (fp8 exports, ``--device`` int8): ModelOpt's ``_convert_to_runtime_precision`` converts
  every other float initializer and value to fp16 (Casts to fp16 after each graph input and to fp32
  before each output; Q/DQ scales become fp16, each Q and DQ then reads its own ``_scale_1``/``_scale_2``).
- fp8: ``int8_to_fp8`` then multiplies every scale by 448/127 and makes the zero points FLOAT8E4M3FN:
  an fp8 scale is ``max|x| · 448 / 127²``, not ``max|x| / 448``.

We write the same Q/DQ without ONNX Runtime's quantiser (which loads the graph again, makes an augmented
copy of it with every tensor as an output and a session on it, then writes the QDQ model in memory):

1. calibration (``activation_ranges``): one ONNX Runtime CPU session on the fp32 graph with only the
   planned GEMMs' activation inputs added as outputs, optimisations and weight pre-packing off (no
   second copy of the weights), reducing each sample to max|x| as the samples are read one at a time;
2. the writer (``insert_qdq``): the graph proto without its weights; per-channel weight scales read one
   tensor at a time from the external-data file (memory-mapped); the Q/DQ nodes inserted in front of
   their GEMM. The fp32 weights file is not touched: at fp32 remainder only the ``.onnx`` is rewritten;
   at fp16 remainder ModelOpt's own conversion runs on the weight-less result and the weights are
   converted tensor by tensor into a new file (``fp16_stream.py``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..base.errors import ExportError

INT8_MAX = 127
#: ModelOpt's ``int8_to_fp8``: fp8 scale = int8 scale · 448 / 127
FP8_FROM_INT8 = 448.0 / 127.0


def qdq_inputs(model: onnx.ModelProto, gemms: Iterable[str]) -> tuple[list[str], list[str]]:
    """(activation tensors, weight initializers) the GEMM nodes named ``gemms`` read, each once, in graph
    order. Raises ExportError for a GEMM that is not a top-level node of the graph."""
    wanted = set(gemms)
    initializers = {t.name for t in model.graph.initializer}
    activations: dict[str, None] = {}
    weights: dict[str, None] = {}
    found = set()
    for node in model.graph.node:
        if node.name in wanted:
            found.add(node.name)
            for name in node.input[:2]:
                (weights if name in initializers else activations)[name] = None
    missing = sorted(wanted - found)
    if missing:
        raise ExportError(f"GEMM {missing[0]!r} is not a top-level node of the graph — expected the planned "
                          "GEMMs outside subgraphs")
    return list(activations), list(weights)


def _session(model: onnx.ModelProto, folder: Path):
    """An ONNX Runtime CPU session on ``model`` (whose weights are external files in ``folder``), written
    next to them for the relative locations to resolve; no graph optimisation, no weight pre-packing."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.add_session_config_entry("session.disable_prepacking", "1")
    options.enable_mem_pattern = False
    scratch = folder / f".calibration-{os.getpid()}.onnx"
    try:
        onnx.save(model, str(scratch))
        return ort.InferenceSession(str(scratch), options, providers=["CPUExecutionProvider"])
    finally:
        scratch.unlink(missing_ok=True)


def activation_ranges(path: Path, tensors: Sequence[str], feeds: Sequence[dict[str, np.ndarray]]) -> dict[str, float]:
    """max|x| of each activation tensor over every calibration sample, by one session on the fp32 graph at
    ``path`` with those tensors as extra outputs; one sample is read at a time."""
    model = onnx.load(str(path), load_external_data=False)
    types = {v.name: v.type.tensor_type.elem_type for v in (*model.graph.value_info, *model.graph.input)}
    outputs = {o.name for o in model.graph.output}
    for name in tensors:
        if name not in outputs:
            model.graph.output.append(helper.make_tensor_value_info(name, types.get(name, onnx.TensorProto.FLOAT), None))
    session = _session(model, path.parent)
    del model
    ranges = dict.fromkeys(tensors, 0.0)
    for index in range(len(feeds)):
        values = session.run(list(tensors), feeds[index])
        for name, value in zip(tensors, values, strict=True):
            if value.size:
                ranges[name] = max(ranges[name], float(np.abs(value).max()))
    return ranges


def symmetric_scale(absmax: np.ndarray | float) -> np.ndarray:
    """ONNX Runtime's symmetric int8 scale: 2·absmax / 254 in float64, stored float32; 1 for a zero range."""
    absmax = np.asarray(absmax, np.float64)
    scale = (2.0 * absmax / (2 * INT8_MAX)).astype(np.float32)
    return np.where(scale < np.finfo(np.float32).tiny, np.float32(1.0), scale).astype(np.float32)


def weight_absmax(tensor: onnx.TensorProto, folder: Path, axis: int) -> np.ndarray:
    """max|W| per slice along ``axis`` of one weight initializer, read (memory-mapped when external)
    without loading the others."""
    if tensor.data_location != onnx.TensorProto.EXTERNAL:
        array = numpy_helper.to_array(tensor)
    else:
        info = {e.key: e.value for e in tensor.external_data}
        dtype = helper.tensor_dtype_to_np_dtype(tensor.data_type)
        array = np.memmap(folder / info["location"], dtype=dtype, mode="r", offset=int(info.get("offset", 0)),
                          shape=tuple(tensor.dims))
    other = tuple(a for a in range(array.ndim) if a != axis % array.ndim)
    return np.abs(array).max(axis=other) if other else np.abs(array)


def weight_axis(node: onnx.NodeProto) -> int:
    """The output-channel axis of a GEMM's weight: 1 for MatMul's [K, N], 0 for Gemm with transB."""
    if node.op_type == "Gemm" and any(a.name == "transB" and a.i for a in node.attribute):
        return 0
    return 1


def insert_qdq(model: onnx.ModelProto, folder: Path, gemms: Iterable[str], ranges: dict[str, float]) -> int:
    """Insert int8 Q/DQ pairs in front of the GEMM nodes named ``gemms`` of ``model`` (loaded without its
    weights, which are in ``folder``): per-tensor activations with the calibrated ``ranges``, per-channel
    weights → the number of pairs written."""
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    wanted = set(gemms)
    done: dict[str, str] = {}  # quantised tensor → its DequantizeLinear output
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.name in wanted:
            for position, name in enumerate(node.input[:2]):
                if name not in done:
                    axis = weight_axis(node) if name in initializers else None
                    if axis is None:
                        if name not in ranges:
                            raise ExportError(f"{node.name}: activation {name!r} has no calibrated range")
                        scale = symmetric_scale(ranges[name])
                    else:
                        scale = symmetric_scale(weight_absmax(initializers[name], folder, axis))
                    nodes += _pair(graph, name, scale, axis)
                    done[name] = f"{name}_DequantizeLinear_Output"
                node.input[position] = done[name]
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    return len(done)


def _pair(graph: onnx.GraphProto, name: str, scale: np.ndarray, axis: int | None) -> list[onnx.NodeProto]:
    """The QuantizeLinear → DequantizeLinear pair of tensor ``name`` in ONNX Runtime's naming; their scale and
    zero point go into ``graph``'s initializers."""
    zero = np.zeros(scale.shape, np.int8)
    graph.initializer.extend([numpy_helper.from_array(scale, f"{name}_scale"),
                              numpy_helper.from_array(zero, f"{name}_zero_point")])
    attributes = {} if axis is None else {"axis": axis}
    quant = helper.make_node("QuantizeLinear", [name, f"{name}_scale", f"{name}_zero_point"],
                             [f"{name}_QuantizeLinear_Output"], f"{name}_QuantizeLinear", **attributes)
    dequant = helper.make_node("DequantizeLinear", [quant.output[0], f"{name}_scale", f"{name}_zero_point"],
                               [f"{name}_DequantizeLinear_Output"], f"{name}_DequantizeLinear", **attributes)
    return [quant, dequant]
