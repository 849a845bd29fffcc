"""fp8 and int8 graphs: explicit FLOAT8E4M3FN or INT8 Q/DQ in front of the planned GEMMs, in the structure
ModelOpt's ONNX quantiser writes.

int8 (``mode="int8"``, W8A8) works like fp8 below, with ``INT8_PLAN``/``INT8_KEEP``
(``families/n16/int8_plan.py``): symmetric activations, per-channel weights (axis 1 of a MatMul weight
[K, N]: one scale per output channel) and zero point 0, max calibration. Its remainder is fp32 unless the
export targets a GPU (``PrecisionPlan.remainder``).

The fp32 graph is exported first; ``quantize_graph`` then quantises it in a child process with the graph's
own calibration feeds (``calibration.py``). By default the lean writer (``qdq_writer.py``, whose docstring
says exactly what ModelOpt writes): one ONNX Runtime session measures the planned GEMMs' max-abs
activations, the Q/DQ go into the graph proto without loading its weights, and for an fp16 remainder
(fp8, ``--device``) ModelOpt's own fp16 conversion and fp8 scale conversion run on that weight-less proto,
the weights then converted one tensor at a time into a new file (``fp16_stream.py``) — about one copy of
the graph in RAM (the calibration session) instead of ModelOpt's seven to ten. ``writer="modelopt"`` runs
``modelopt.onnx.quantization.quantize(quantize_mode="fp8", calibration_eps=["cpu"])`` (int8: ModelOpt's
int8 step alone, ``_int8_step``) end to end instead; ``tests/export/test_quantize_lean.py`` holds the two
to the same graph.

Which nodes are quantised is declared as data by each model family (``FP8_PLAN``, ``FP8_KEEP``; N1.6's in
``families/n16/fp8_plan.py``), per graph kind, by the PyTorch module each ONNX node came from (the exporter records it in
``pkg.torch.onnx.name_scopes``):

- the Linear GEMMs and attention matmuls of vision, backbone, dit_context and dit;
- never norms, softmax, residual adds or the embedding gather (not GEMMs, ModelOpt never sees them);
- never the vision patch embedding (NVIDIA's N1.6 FP8 recipe keeps it in high precision) nor the DiT's
  final ``proj_out_2`` (the output layer, excluded by ModelOpt's own default FP8 config as ``*proj_out*``);
- attention matmuls only where ModelOpt's FP8 MHA pattern applies (8 < head dim ≤ 256), which is what
  TensorRT's FP8 fused attention supports; ``planned_nodes`` applies it per graph
  (``tests/export/test_quantize.py`` lists the result).

The backbone is a mixed plan, chosen by sensitivity (what ModelOpt's AutoQuantize searches for): its
features are held to §7's absolute bound (mean abs ≤ 0.05 at RMS ≈ 1), and fp8's 3-bit mantissa adds
up over the decoder layers. Rule: **the first decoder layer (``FP8_KEEP``) and, in every layer, the
two GEMMs that write into the residual stream (``o_proj``, ``down_proj``) stay at high precision**;
q/k/v, gate/up and the attention matmuls of the other layers are fp8. Measured on the ``small`` preset
(4 layers kept; real quantiser, ORT CPU, backbone graph alone on the fp32 chain's inputs, worst of 4
observation seeds; errors add in quadrature):

- everything fp8: mean abs 0.082 (cosine 0.995) — fails;
- one layer alone at fp8: layer 0 0.058, 1 0.040, 2 0.031, 3 0.025 (errors grow with the depth
  they travel through, so the first layer costs most);
- per FLOP, ``o_proj`` is the most sensitive family in every layer (2-4× the others); ``down_proj``
  costs about as much as q/k/v here, and on real SwiGLU weights its input is the heavy-tailed one;
- layers 1-3 without ``o_proj``: 0.048 (over the 0.045 kept as margin under 0.05); also without
  ``down_proj`` (this plan): 0.042 with synthetic or recorded calibration, end to end 0.040-0.043,
  with 55 % of the backbone's GEMM FLOPs at fp8 (the last half of the layers alone: 0.040 at 50 %).
  On the full N1.6 config (16 layers) the rule quantises ≈ 63 % of them (counted, not measured).

q/k/v (and gate/up) share one input, hence one activation quantiser: they are planned together.
"""

from __future__ import annotations

import ast
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from ..base.errors import ExportError, require
from ..base.files import write_atomic
from ..contract.quant_plans import is_planned, role_of
from ..families.registry import DEFAULT_FAMILY
from .onnx_io import all_nodes

GEMM_OPS = ("MatMul", "Gemm")
#: attribute under which precision.CastGraph holds the graph module (stripped from roles)
WRAPPER_ATTRIBUTE = "inner"
FP8_DTYPE = onnx.TensorProto.FLOAT8E4M3FN
#: the quantised precisions: (plan, keep) per graph kind, and the zero-point dtype their Q/DQ carry
def default_plans(mode: str) -> tuple[dict, dict]:
    """(plan, keep) of ``mode`` (fp8, int8) of the default family, for callers that pass no family's."""
    face = DEFAULT_FAMILY.export()
    return {"fp8": (face.FP8_PLAN, face.FP8_KEEP), "int8": (face.INT8_PLAN, face.INT8_KEEP)}[mode]
ZERO_POINT_DTYPES = {"fp8": FP8_DTYPE, "int8": onnx.TensorProto.INT8}
#: ModelOpt's FP8 MHA pattern (and TensorRT's FP8 fMHA) needs 8 < head dim ≤ 256
MHA_HEAD_DIM = (9, 256)
PIP_FP8 = "gr00t-trt[fp8]"
#: who writes the Q/DQ (``quantize_graph``)
WRITERS = ("lean", "modelopt")
#: ModelOpt options per mode. int8 plans no attention matmul, so ModelOpt's MHA analysis is skipped
#: (``disable_mha_qdq``: one full inference of the graph less), and so is its GEMV exclusion (another
#: inference; every planned GEMM has M = tokens > 1): the plan alone decides what is quantised
MODE_OPTIONS: dict[str, dict] = {
    "fp8": {},
    "int8": {"disable_mha_qdq": True, "enable_gemv_detection_for_trt": False},
}


@dataclass(frozen=True)
class GemmNode:
    """One GEMM of an exported graph: ONNX node name, role (module path with indices as ``*``, or
    ``attention``), whether it multiplies two activations (attention) rather than an activation by a
    weight, and its module path with indices (``FP8_KEEP``)."""

    name: str
    role: str
    attention: bool
    path: str = "?"


def node_path(node: onnx.NodeProto) -> tuple[str, bool]:
    """(module path, is attention): ``transformer_blocks.3.to_q`` for that Linear's matmul;
    ``layers.0.self_attn`` and True for the matmuls of its scaled_dot_product_attention, and
    ``transformer_blocks.3.attention`` and True for those of an ``attention.Attention`` module; ``?`` when
    the exporter recorded no scope."""
    meta = {p.key: p.value for p in node.metadata_props}
    scopes = ast.literal_eval(meta.get("pkg.torch.onnx.name_scopes", "[]"))
    if not scopes:
        return "?", False
    module = scopes[-2] if len(scopes) >= 2 else scopes[-1]
    parts = module.split(".")
    if parts[0] == WRAPPER_ATTRIBUTE:  # the precision wrapper (precision.CastGraph) around the graph module
        parts = parts[1:]
    attention = scopes[-1].startswith("scaled_dot_product_attention") or parts[-1] == "attention"
    return ".".join(parts), attention


def node_role(node: onnx.NodeProto) -> str:
    """``transformer_blocks.*.to_q`` for the Linear ``transformer_blocks.3.to_q``; ``attention`` for the
    matmuls of scaled_dot_product_attention or of an ``attention.Attention`` module; ``?`` when the
    exporter recorded no scope."""
    return role_of(*node_path(node))


def gemm_nodes(model: onnx.ModelProto) -> list[GemmNode]:
    """Every MatMul/Gemm of the (fp32, freshly exported) graph with its role and module path."""
    result = []
    for node in all_nodes(model.graph):
        if node.op_type in GEMM_OPS:
            role = node_role(node)
            result.append(GemmNode(node.name, role, role == "attention", node_path(node)[0]))
    return result


def planned_nodes(kind: str, model: onnx.ModelProto, head_dim: int | None = None, mode: str = "fp8",
                  plans: tuple[dict, dict] | None = None) -> list[GemmNode]:
    """The GEMMs the ``mode`` plan quantises in this graph, less those its keep list keeps; attention
    matmuls only when ``head_dim`` fits the FP8 MHA pattern (None: include them). ``plans``: the model
    family's (plan, keep) for ``mode`` (default: ``DEFAULT_FAMILY``'s ``FP8_PLAN``/``INT8_PLAN``)."""
    plan, keep = plans if plans is not None else default_plans(mode)
    if kind not in plan:
        raise ExportError(f"graph kind {kind!r} has no {mode} plan — expected one of: {', '.join(plan)}")
    mha_ok = head_dim is None or MHA_HEAD_DIM[0] <= head_dim <= MHA_HEAD_DIM[1]
    return [gemm for gemm in gemm_nodes(model)
            if (mha_ok or not gemm.attention) and is_planned(kind, gemm.path, gemm.attention, plan, keep)]


def quantized_nodes(model: onnx.ModelProto, mode: str = "fp8") -> list[str]:
    """Names of the GEMMs fed by a DequantizeLinear whose zero point has the ``mode``'s dtype
    (FLOAT8E4M3FN, INT8), read back from a quantised graph to compare with the plan."""
    nodes = list(all_nodes(model.graph))
    inits = {i.name: i for i in model.graph.initializer}
    dq_outputs = set()
    for node in nodes:
        if node.op_type == "DequantizeLinear" and len(node.input) > 2:
            zero = inits.get(node.input[2])
            if zero is not None and zero.data_type == ZERO_POINT_DTYPES[mode]:
                dq_outputs.add(node.output[0])
    return sorted(n.name for n in nodes if n.op_type in GEMM_OPS and any(i in dq_outputs for i in n.input))


def check_plan(label: str, mode: str, quantised: onnx.ModelProto, plan: Sequence[GemmNode]) -> list[str]:
    """The GEMMs ``quantised`` carries ``mode`` Q/DQ on, which must be exactly the planned ones: a planned
    GEMM left unquantised, or a quantised one the plan does not name, raises ExportError."""
    got = quantized_nodes(quantised, mode)
    want = sorted(g.name for g in plan)
    if got != want:
        extra, missing = sorted(set(got) - set(want)), sorted(set(want) - set(got))
        raise ExportError(
            f"{label}: {mode} quantised GEMMs differ from the plan — unexpected {extra[:3]}, "
            f"missing {missing[:3]} ({len(got)} quantised, {len(want)} planned)"
        )
    return got


def separate_activation_quantizers(model: onnx.ModelProto) -> int:
    """Give every consumer of a quantised activation its own QuantizeLinear → DequantizeLinear pair (same
    scale and zero point, in initializers of its own) → the number of pairs added.

    Why: ModelOpt writes one pair per tensor, shared by the GEMMs that read it (q/k/v, gate/up, to_k/to_v).
    On x86 CPUs without VNNI, ONNX Runtime fuses DequantizeLinear → MatMul into its integer kernel
    (MatMulIntegerToFloat) only after turning the int8 activation pair into uint8, and it does that only
    for a QuantizeLinear with one consumer; its common-subexpression elimination merges identical copies
    back, hence the separate initializers. Measured on ``small``: backbone 0 of 15 planned GEMMs on the
    integer kernel before, 15 of 15 after; DiT 28 → 40 of 40. TensorRT reads each copy as the same
    quantisation of the tensor (still symmetric int8, zero point 0)."""
    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    nodes, added = [], 0
    for node in graph.node:
        nodes.append(node)
        if node.op_type != "QuantizeLinear" or node.input[0] in initializers:
            continue  # a weight's Q has one DequantizeLinear and one GEMM
        pairs = [(dq, user) for dq in consumers.get(node.output[0], ())
                 if dq.op_type == "DequantizeLinear" and dq.input[1:] == node.input[1:]
                 for user in consumers.get(dq.output[0], ())]
        for dq, user in pairs[1:]:  # the first consumer keeps the original pair
            suffix = f"/for/{user.name or added}"
            quant, dequant = onnx.NodeProto(), onnx.NodeProto()
            quant.CopyFrom(node)
            dequant.CopyFrom(dq)
            quant.name, dequant.name = node.name + suffix, dq.name + suffix
            quant.output[0], dequant.output[0] = node.output[0] + suffix, dq.output[0] + suffix
            dequant.input[0] = quant.output[0]
            for position in range(1, len(node.input)):  # scale, zero point
                copy = onnx.TensorProto()
                copy.CopyFrom(initializers[node.input[position]])
                copy.name = node.input[position] + suffix
                graph.initializer.append(copy)
                quant.input[position] = copy.name
                if position < len(dequant.input):
                    dequant.input[position] = copy.name
            user.input[list(user.input).index(dq.output[0])] = dequant.output[0]
            nodes += [quant, dequant]
            added += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return added


class _FeedReader:
    """ONNX Runtime CalibrationDataReader over a list of feed dicts. ModelOpt's MHA analysis also calls
    ``get_first()``, which ORT's base class does not define (tensorrt-notes §3.1)."""

    def __init__(self, feeds: Sequence[dict[str, np.ndarray]]):
        self.feeds = feeds  # not copied: _StoredFeeds reads one sample at a time
        self.position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position >= len(self.feeds):
            return None
        self.position += 1
        return self.feeds[self.position - 1]

    def get_first(self) -> dict[str, np.ndarray]:
        return self.feeds[0]

    def rewind(self) -> None:
        self.position = 0

    def __len__(self) -> int:
        return len(self.feeds)


class _StoredFeeds(Sequence):
    """The calibration samples of the child's ``.npz``, each read from the file when asked for: the child
    holds one sample at a time instead of all of them for the whole quantisation (16 samples of the
    full-size DiT's cross-attention K/V are ~1 GB)."""

    def __init__(self, stored, names: Sequence[str]):
        self.stored, self.names = stored, list(names)
        self.count = len(stored.files) // len(self.names)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index):
        if not 0 <= index < self.count:
            raise IndexError(index)
        return {name: self.stored[f"{index}/{name}"] for name in self.names}


def _calibration_reader(feeds: Sequence[dict[str, np.ndarray]]):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(_FeedReader, CalibrationDataReader):
        pass

    return Reader(feeds)


def quantize_graph(
    path: Path,
    kind: str,
    feeds: Sequence[dict[str, np.ndarray]],
    *,
    head_dim: int | None = None,
    high_precision: str = "fp16",
    isolate: bool = True,
    mode: str = "fp8",
    plans: tuple[dict, dict] | None = None,
    writer: str = "lean",
) -> dict[str, str]:
    """Quantise the fp32 graph at ``path`` in place (``.onnx`` + ``.onnx.data``) → {quantised GEMM node
    name: its role}.

    ``isolate``: run ModelOpt in a child process. It holds several copies of the graph at once (the
    full-size DiT of 3.3 GB takes it past 20 GB; ``benchmarks/int8_memory.py``) and does not give that
    memory back, so in-process every
    fp8 graph after the first would start from the last one's peak; the child gets the feeds through a
    file next to the graph, and its death (e.g. out of memory) is one line.

    ``writer``: ``lean`` (``qdq_writer.py``: our calibration and Q/DQ, about one copy of the graph in RAM)
    or ``modelopt`` (ModelOpt's quantiser end to end, several copies; kept to check the lean one against).

    Raises ExportError when the result quantises other GEMMs than the plan or none at all."""
    if not feeds:
        raise ExportError(f"{path.name}: no calibration feeds — expected at least one sample per graph")
    if writer not in WRITERS:
        raise ExportError(f"unknown Q/DQ writer {writer!r} — expected one of: {', '.join(WRITERS)}")
    if writer == "modelopt" or (mode, high_precision) != ("int8", "fp32"):  # the lean writer's fp16/fp8 steps
        require("modelopt.onnx.quantization", PIP_FP8, f"{mode} quantisation")
    if isolate:
        return _quantize_in_child(path, kind, feeds, head_dim, high_precision, mode, plans, writer)
    model = onnx.load(str(path), load_external_data=False)
    plan = planned_nodes(kind, model, head_dim, mode, plans)
    if not plan:
        raise ExportError(f"{path.name}: the {mode} plan selects no GEMM — expected the {kind} GEMMs of "
                          f"{mode.upper()}_PLAN less {mode.upper()}_KEEP; export this graph at fp16 or bf16")
    if writer == "lean":
        return _quantize_lean(path, model, plan, feeds, mode, high_precision)
    from modelopt.onnx.quantization import quantize

    shapes = ",".join(f"{k}:{'x'.join(str(d) for d in v.shape)}" for k, v in feeds[0].items())
    out = path.with_name(f".{path.stem}.{mode}-{os.getpid()}.onnx")
    started = time.perf_counter()
    options = dict(calibration_data_reader=_calibration_reader(feeds), calibration_method="max",
                   calibration_eps=["cpu"], calibration_shapes=shapes, op_types_to_quantize=list(GEMM_OPS),
                   nodes_to_quantize=[f"^{re.escape(g.name)}$" for g in plan], high_precision_dtype=high_precision,
                   use_external_data_format=True, log_level="ERROR", **MODE_OPTIONS[mode])
    with _quiet_modelopt():
        try:
            if mode == "int8":
                _int8_step(path, out, options)
            else:
                quantize(str(path), quantize_mode=mode, output_path=str(out), **options)
        except Exception as exc:  # ModelOpt and ORT raise many types; report one line
            _remove(out)
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ExportError(f"{mode} quantisation of {path.name} failed: {type(exc).__name__}: {first}") from exc
    try:
        quantised = onnx.load(str(out), load_external_data=False)
        if mode == "int8":
            separate_activation_quantizers(quantised)
        got = check_plan(path.name, mode, quantised, plan)
        _replace_graph(quantised, out, path)
    finally:
        _remove(out)
    logging.getLogger(__name__).info("%s: %d GEMMs at %s in %.1fs", path.name, len(got), mode, time.perf_counter() - started)
    roles = {g.name: g.role for g in plan}
    return {name: roles[name] for name in got}


def _quantize_lean(path: Path, model: onnx.ModelProto, plan: Sequence[GemmNode], feeds, mode: str,
                   high_precision: str) -> dict[str, str]:
    """``quantize_graph`` by the lean writer (``qdq_writer.py``); ``model`` is the graph at ``path`` without
    its weights. int8 at fp32 remainder rewrites only the ``.onnx`` (the weights stay as they are); an fp16
    remainder runs ModelOpt's conversion on the weight-less graph and writes a new weights file one
    tensor at a time (``fp16_stream.py``)."""
    from .fp16_stream import REMAINDER_DTYPES, remainder_structure, write_weights
    from .qdq_writer import activation_ranges, insert_qdq, qdq_inputs

    started = time.perf_counter()
    names = [g.name for g in plan]
    try:
        activations, _ = qdq_inputs(model, names)
        ranges = activation_ranges(path, activations, feeds)
    except ExportError:
        raise
    except Exception as exc:  # ONNX Runtime raises many types (e.g. a feed that is not an input); one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExportError(f"{mode} quantisation of {path.name} failed: {type(exc).__name__}: {first}") from exc
    insert_qdq(model, path.parent, names, ranges)
    out = path.with_name(f".{path.stem}.{mode}-{os.getpid()}.onnx")
    streamed = high_precision in REMAINDER_DTYPES
    try:
        if streamed:  # the weights stay on disk until write_weights
            with _quiet_modelopt():
                model, sources = remainder_structure(model, path.parent, mode, high_precision)
        if mode == "fp8":
            from modelopt.onnx.quantization.fp8 import int8_to_fp8

            model = int8_to_fp8(model)
        if mode == "int8":
            separate_activation_quantizers(model)
        got = check_plan(path.name, mode, model, plan)
        if streamed:  # new weights, converted tensor by tensor into one file, then put in place
            write_weights(model, sources, path.parent, out.with_name(f"{out.name}.data"))
            _replace_graph(model, out, path)
        else:  # the weights file is unchanged: rewrite the graph alone
            write_atomic(path, model.SerializeToString())
    finally:
        _remove(out)
    logging.getLogger(__name__).info("%s: %d GEMMs at %s (lean) in %.1fs", path.name, len(got), mode,
                                     time.perf_counter() - started)
    roles = {g.name: g.role for g in plan}
    return {name: roles[name] for name in got}


def _int8_step(path: Path, out: Path, options: dict) -> None:
    """ModelOpt's int8 step alone, without its ``quantize()`` wrapper, written to ``out``. The wrapper's
    preprocessing (opset upgrade, node naming, shape inference) has nothing to do on our graphs (opset 21,
    every node named, no custom ops) but keeps its loaded copy of the graph — ≈ 3× the graph's size — alive
    for the whole run. Measured on a 384 MB DiT-shaped graph: peak 4.2 → 3.1 GB
    (``benchmarks/results/int8_memory.md``)."""
    from modelopt.onnx.quantization.int8 import quantize as quantize_int8

    scratch: list[str] = []  # ModelOpt's intermediate files, which its wrapper would delete
    try:
        model = quantize_int8(onnx_path=str(path), intermediate_generated_files=scratch, **options)
        onnx.save(model, str(out), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=f"{out.name}.data")
    finally:
        for name in scratch:
            _remove(Path(name))


def _quantize_in_child(path: Path, kind: str, feeds, head_dim: int | None, high_precision: str,
                       mode: str, plans: tuple[dict, dict] | None = None, writer: str = "lean") -> dict[str, str]:
    """``quantize_graph`` in a fresh interpreter started with ``subprocess`` — not multiprocessing's
    spawn, which re-runs the caller's ``__main__`` and so fails from any script without a main guard.
    The request goes on the command line, the feeds and the result through files next to the graph."""
    import json
    import subprocess
    import sys

    stem = path.with_name(f".{path.stem}.{mode}-child-{os.getpid()}")
    feeds_file, result_file = stem.with_suffix(".npz"), stem.with_suffix(".json")
    names = list(feeds[0])
    request = {"path": str(path), "kind": kind, "feeds": str(feeds_file), "names": names, "head_dim": head_dim,
               "high_precision": high_precision, "mode": mode, "result": str(result_file), "writer": writer,
               "plans": None if plans is None else [{kind: list(plans[0].get(kind, ()))},
                                                    {kind: list(plans[1].get(kind, ()))}]}
    package_root = str(Path(__file__).resolve().parents[2])  # the child imports this very gr00t_trt
    # ModelOpt's scratch copies of the graph (GBs at full size, left behind when it fails) go next to the
    # graph, on the disk the user chose, and are removed with this folder whatever happens
    scratch = stem.with_suffix(".tmp")
    env = dict(os.environ, TMPDIR=str(scratch),
               PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
    try:
        scratch.mkdir()
        np.savez(feeds_file, **{f"{i}/{name}": feed[name] for i, feed in enumerate(feeds) for name in names})
        child = subprocess.run(
            [sys.executable, "-c", "from gr00t_trt.export.quantize import _child_main; _child_main()",
             json.dumps(request)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
        )
        if not result_file.is_file():  # the child died without a word: killed (out of memory) or crashed
            if child.returncode < 0:
                raise ExportError(
                    f"{mode} quantisation of {path.name} was killed (signal {-child.returncode}) — out of memory? "
                    f"ModelOpt needs several times the graph's {_size_gb(path):.1f} GB of RAM"
                )
            last = (child.stderr.strip().splitlines() or ["no output"])[-1]
            raise ExportError(f"{mode} quantisation of {path.name} crashed (exit code {child.returncode}): {last}")
        result = json.loads(result_file.read_text())
        _CHILD_PEAKS.append(result.get("peak_rss_bytes") or 0)
    finally:
        _remove(feeds_file)
        _remove(result_file)
        shutil.rmtree(scratch, ignore_errors=True)
    if result["status"] != "ok":
        raise ExportError(result["message"])
    return result["value"]


#: each quantiser child's own peak RSS, as it reported it (``children_peak_rss``)
_CHILD_PEAKS: list[int] = []


def children_peak_rss() -> int:
    """The largest peak RSS of this process's quantiser children so far, in bytes (0: none ran). Each child
    reads its own ``VmHWM``: ``RUSAGE_CHILDREN`` would not do, a forked child's high-water mark starts at
    its parent's (a 218 MB parent running ``true`` reports 218 MB)."""
    return max(_CHILD_PEAKS, default=0)


def _child_main() -> None:
    """Entry point of the quantisation child: the request in argv[1]; the result, or a one-line error,
    written as JSON to the request's result file."""
    import json
    import sys

    from ..base.files import write_json

    request = json.loads(sys.argv[1])
    path = Path(request["path"])
    try:
        with np.load(request["feeds"]) as stored:
            feeds = _StoredFeeds(stored, request["names"])
            value = quantize_graph(path, request["kind"], feeds, head_dim=request["head_dim"],
                                   high_precision=request["high_precision"], isolate=False,
                                   mode=request["mode"], plans=request.get("plans"),
                                   writer=request["writer"])
        result = {"status": "ok", "value": value}
    except ExportError as exc:
        result = {"status": "error", "message": str(exc)}
    except Exception as exc:  # report one line to the parent
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        result = {"status": "error", "message": f"{request.get('mode', 'fp8')} quantisation of {path.name} failed: {type(exc).__name__}: {first}"}
    from ..bench.machine import peak_rss_bytes

    result["peak_rss_bytes"] = peak_rss_bytes()  # VmHWM: this process's own, reset by exec
    write_json(request["result"], result)


def _size_gb(path: Path) -> float:
    data = path.with_name(path.name + ".data")
    return (path.stat().st_size + (data.stat().st_size if data.exists() else 0)) / 1e9


def _replace_graph(model: onnx.ModelProto, src: Path, dst: Path) -> None:
    """Put ``model`` (read from ``src`` without its weights) over ``dst``, atomically per file. The weights
    stay where ModelOpt wrote them: its one external-data file is renamed to ``dst``'s and the graph's
    references to it rewritten — no load of the weights, so no copy of the graph in memory."""
    locations = {entry.value for tensor in _external_tensors(model) for entry in tensor.external_data
                 if entry.key == "location"}
    if len(locations) > 1:
        raise ExportError(f"{src.name}: weights in {len(locations)} files ({sorted(locations)[:3]}) — "
                          "expected ModelOpt's one external-data file")
    data_name = f"{dst.name}.data"
    for tensor in _external_tensors(model):
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = data_name
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    os.close(fd)
    try:
        onnx.save(model, tmp)
        if locations:
            os.replace(src.with_name(locations.pop()), dst.with_name(data_name))
        else:  # every tensor inline: the fp32 graph's weights file must not outlive it
            dst.with_name(data_name).unlink(missing_ok=True)
        os.replace(tmp, dst)
    finally:
        _remove(Path(tmp))


def _external_tensors(model: onnx.ModelProto) -> Iterable[onnx.TensorProto]:
    from onnx.external_data_helper import _get_all_tensors

    return (t for t in _get_all_tensors(model) if t.data_location == onnx.TensorProto.EXTERNAL)


def _remove(path: Path) -> None:
    for p in (path, path.with_name(path.name + ".data"), path.with_name(path.name + "_data")):
        try:
            p.unlink()
        except FileNotFoundError:
            pass


class _quiet_modelopt:
    """ModelOpt logs at INFO to the root handlers and polygraphy prints warnings; keep export output
    readable (errors still raise)."""

    def __enter__(self):
        self.saved = {}
        for name in ("modelopt", "polygraphy"):
            logger = logging.getLogger(name)
            self.saved[name] = logger.level
            logger.setLevel(logging.ERROR)
        return self

    def __exit__(self, *exc):
        for name, level in self.saved.items():
            logging.getLogger(name).setLevel(level)
        return False
