"""Precision audit: read each built layer's precision back from the engine and compare with the graph.

TensorRT has been seen building a GEMM in fp32 that the graph asked to run in fp8 (on Thor), silently.
The graph's request per GEMM/conv node comes from the ONNX: the dtype of its first input, or fp8/int8
when that input comes from a DequantizeLinear. The engine inspector's JSON (``ProfilingVerbosity.DETAILED``)
gives every layer's name, type and input formats only when an execution context with every input shape
set is attached (else "N/A due to dynamic shapes"), so the audit attaches one at the profile's opt shapes.
Layers are matched to ONNX nodes by name and by their ``Metadata`` (``[ONNX Layer: <node>]`` entries: a
Myelin ``{ForeignNode[...]}`` names only the first and last node it fused). A requested half/fp8 GEMM that
runs fp32, or whose format cannot be read, fails the build.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..base.errors import EngineError, require

GEMM_OPS = {"MatMul", "Gemm", "Conv", "ConvTranspose"}
GEMM_LAYER = re.compile(r"gemm|matrix.?multiply|convolution|conv|fully.?connected|mmha|attention", re.IGNORECASE)
LOW_PRECISIONS = ("fp8", "int8", "fp4", "fp16", "bf16")
#: substrings of TensorRT's "Format/Datatype" strings, most specific first
_FORMAT_PRECISIONS = (
    ("fp8", "fp8"), ("float8", "fp8"), ("e4m3", "fp8"), ("fp4", "fp4"), ("bf16", "bf16"), ("bfloat16", "bf16"),
    ("fp16", "fp16"), ("half", "fp16"), ("int8", "int8"), ("fp32", "fp32"), ("float", "fp32"),
)
_ONNX_DTYPES = {1: "fp32", 10: "fp16", 16: "bf16", 11: "fp64", 17: "fp8", 18: "fp8", 19: "fp8", 20: "fp8", 3: "int8"}


@dataclass(frozen=True)
class LayerPrecision:
    name: str
    layer_type: str
    precision: str  # fp32 | fp16 | bf16 | fp8 | int8 | fp4 | unknown
    asked: str | None  # what the ONNX asked for (None: no GEMM/conv node matched)


@dataclass
class AuditReport:
    """Per-layer precisions of one engine and the GEMMs that came back wider than asked."""

    graph: str
    layers: list[LayerPrecision] = field(default_factory=list)
    violations: list[LayerPrecision] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.violations

    def summary(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for layer in self.layers:
            counts[layer.precision] = counts.get(layer.precision, 0) + 1
        return counts

    def raise_on_failure(self) -> None:
        unread = [v for v in self.violations if v.precision == "unknown"]
        if unread:
            raise EngineError(
                f"precision audit of {self.graph}: the format of {len(unread)} GEMM/conv layer(s) cannot be read "
                f"(first: {unread[0].name}) — the engine inspector needs an execution context with every input "
                "shape set; the plan was not kept"
            )
        if self.violations:
            listed = "; ".join(f"{v.name} ({v.layer_type}: asked {v.asked}, built {v.precision})" for v in self.violations[:10])
            more = f" and {len(self.violations) - 10} more" if len(self.violations) > 10 else ""
            raise EngineError(
                f"precision audit of {self.graph}: {len(self.violations)} GEMM/conv layer(s) built in fp32 that the "
                f"graph asked to run in lower precision — {listed}{more} — check the Q/DQ placement or the "
                "TensorRT version; the plan was not kept"
            )


def requested_precisions(onnx_path: Path) -> dict[str, str]:
    """ONNX node name → precision its GEMM/conv was asked to run in."""
    onnx = require("onnx", "gr00t-trt[trt]", "The precision audit of TensorRT builds")

    model = onnx.load(str(onnx_path), load_external_data=False)
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - types of graph inputs/initializers are enough for most graphs
        pass
    graph = model.graph
    types: dict[str, int] = {}
    for vi in (*graph.input, *graph.value_info, *graph.output):
        types[vi.name] = vi.type.tensor_type.elem_type
    for init in graph.initializer:
        types[init.name] = init.data_type
    producers = {out: node for node in graph.node for out in node.output}
    asked = {}
    for node in graph.node:
        if node.op_type not in GEMM_OPS or not node.input:
            continue
        source = producers.get(node.input[0])
        if source is not None and source.op_type == "DequantizeLinear":
            quantised = types.get(source.input[0])
            asked[node.name] = _ONNX_DTYPES.get(quantised, "fp8") if quantised else "fp8"
        else:
            asked[node.name] = _ONNX_DTYPES.get(types.get(node.input[0], 0), "unknown")
    return asked


def format_precision(text: str) -> str:
    lowered = text.lower()
    for needle, precision in _FORMAT_PRECISIONS:
        if needle in lowered:
            return precision
    return "unknown"


def _layer_precision(layer: dict[str, Any]) -> str:
    for tensor in layer.get("Inputs", []):
        fmt = tensor.get("Format/Datatype") or tensor.get("Datatype") or ""
        if fmt:
            return format_precision(str(fmt))
    return "unknown"


def _contains_node(layer_name: str, node: str) -> bool:
    """``node`` appears in ``layer_name`` as a whole name (``MatMul_1`` is not inside ``MatMul_13``)."""
    start = layer_name.find(node)
    while start >= 0:
        end = start + len(node)
        before_ok = start == 0 or not (layer_name[start - 1].isalnum() or layer_name[start - 1] == "_")
        after_ok = end == len(layer_name) or not (layer_name[end].isalnum() or layer_name[end] == "_")
        if before_ok and after_ok:
            return True
        start = layer_name.find(node, start + 1)
    return False


_METADATA_NODE = re.compile(r"\[ONNX Layer: ([^\]\x1f]+)\]")


def _asked_for(layer_name: str, asked: dict[str, str], metadata: str = "") -> str | None:
    """The narrowest precision asked by the ONNX GEMM/conv nodes fused into this layer (named in the
    layer's name or in its ``Metadata``)."""
    listed = set(_METADATA_NODE.findall(metadata))
    found = [p for node, p in asked.items() if node and (node in listed or _contains_node(layer_name, node))]
    for precision in LOW_PRECISIONS:
        if precision in found:
            return precision
    return found[0] if found else None


def audit_engine_information(graph: str, info_json: str, asked: dict[str, str]) -> AuditReport:
    """Audit the engine inspector's JSON (``get_engine_information(LayerInformationFormat.JSON)``)."""
    try:
        info = json.loads(info_json)
    except json.JSONDecodeError as exc:
        raise EngineError(f"engine information of {graph} is not JSON ({exc.msg})") from None
    layers = info.get("Layers", [])
    if layers and not all(isinstance(layer, dict) for layer in layers):
        raise EngineError(
            f"engine information of {graph} has layer names only — expected per-layer detail; build with "
            "profiling_verbosity = ProfilingVerbosity.DETAILED"
        )
    report = AuditReport(graph)
    for layer in layers:
        name = str(layer.get("Name", ""))
        layer_type = str(layer.get("LayerType", ""))
        precision = _layer_precision(layer)
        wanted = _asked_for(name, asked, str(layer.get("Metadata", "")))
        entry = LayerPrecision(name, layer_type, precision, wanted)
        report.layers.append(entry)
        is_gemm = wanted is not None or GEMM_LAYER.search(layer_type) is not None
        if is_gemm and wanted in LOW_PRECISIONS and precision in ("fp32", "unknown"):
            report.violations.append(entry)
    return report


def opt_shape_context(trt: Any, engine: Any) -> Any:
    """An execution context (no activation memory) with every input at its profile's opt shape."""
    context = engine.create_execution_context(trt.ExecutionContextAllocationStrategy.USER_MANAGED)
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
            _low, opt, _high = engine.get_tensor_profile_shape(name, 0)
            if not context.set_input_shape(name, tuple(opt)):
                raise EngineError(f"TensorRT refused the opt shape {tuple(opt)} of input {name!r} for the audit")
    return context


def audit_engine(trt: Any, engine: Any, graph: str, onnx_path: Path) -> AuditReport:
    """Run the engine inspector, with a context at the opt shapes, and audit it against its ONNX graph."""
    inspector = engine.create_engine_inspector()
    context = opt_shape_context(trt, engine)
    inspector.execution_context = context
    info = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
    return audit_engine_information(graph, info, requested_precisions(onnx_path))
