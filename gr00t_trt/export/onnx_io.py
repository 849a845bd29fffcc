"""Write one graph to ONNX from its declaration, and check what was written.

The graph's ``GraphSpec`` (gr00t_trt/contract/graphs.py) gives names, order and which dims are dynamic; this
module turns that into ``torch.onnx.export`` arguments (dynamo, opset 21, external data), then runs the
ONNX checker and shape inference, refuses ops TensorRT 10.13 cannot parse or whose output shape depends
on data, and reads back the concrete I/O for the manifest.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
import torch

from ..base.errors import ExportError
from ..contract.graphs import DERIVED, DimSpec, GraphSpec, TensorSpec, dim_size

OPSET = 21
#: ops we never ship: data-dependent output shapes, or opset-23 ops TensorRT 10.13 cannot parse
FORBIDDEN_OPS = frozenset({"NonZero", "Attention", "RMSNormalization", "RotaryEmbedding"})


def dynamic_shapes_for(spec: GraphSpec, declared: Mapping[str, DimSpec],
                       sizes: Mapping[str, int] | None = None) -> dict[str, dict[int, torch.export.Dim]]:
    """torch.export dynamic_shapes keyed by forward-argument (= input) name; one Dim object per name so
    equal names are tied across inputs. A derived dim of one dynamic factor and static ones (``sizes``),
    e.g. the image height h = r·R, becomes that multiple of the dynamic Dim. ``declared``: the family's
    dims (which are dynamic, their trace bounds)."""
    dynamic = [name for name, d in declared.items() if d.dynamic]
    dims = {name: torch.export.Dim(name, min=1, max=declared[name].trace_max) for name in dynamic}
    sizes = sizes or {}
    shapes: dict[str, dict[int, torch.export.Dim]] = {}
    for tensor in spec.inputs:
        axes = {}
        for i, d in enumerate(tensor.dims):
            if d in dims:
                axes[i] = dims[d]
            elif isinstance(d, str) and d in DERIVED and d not in sizes:
                root = _dynamic_roots(d, dims, sizes)
                if len(root) != 1:
                    raise ExportError(f"input {tensor.name!r} dim {d!r} is a product of {len(root)} dynamic dims — "
                                      "expected one (times static sizes)")
                factor = dim_size(d, {**sizes, root[0]: 1})
                axes[i] = dims[root[0]] * factor
        shapes[tensor.name] = axes
    return shapes


def _dynamic_roots(name: str, dynamic: Mapping[str, object], sizes: Mapping[str, int]) -> list[str]:
    """The dynamic dims a derived dim is a product of (through nested products: P = gh·gw = r·U·c·U)."""
    if name in dynamic:
        return [name]
    if name in sizes or name not in DERIVED:
        return []
    return [root for factor in DERIVED[name] for root in _dynamic_roots(factor, dynamic, sizes)]


def export_onnx(module: torch.nn.Module, args: tuple, spec: GraphSpec, path: Path,
                sizes: Mapping[str, int] | None = None, *, dims: Mapping[str, DimSpec]) -> None:
    """Export ``module`` (forward args in the spec's input order) to ``path`` + ``path.data``; ``sizes``:
    the export's static dims (what derived dynamic dims are multiples of); ``dims``: the family's."""
    path.parent.mkdir(parents=True, exist_ok=True)
    module.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                args,
                str(path),
                dynamo=True,
                opset_version=OPSET,
                input_names=spec.input_names,
                output_names=spec.output_names,
                dynamic_shapes=dynamic_shapes_for(spec, dims, sizes),
                external_data=True,
                verbose=False,
            )
    except Exception as exc:  # torch raises many types; report one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"exporting graph {path.stem!r} failed: {type(exc).__name__}: {first}") from exc
    finally:
        _forget_rewriter_matches()
    check_onnx(path)


def _forget_rewriter_matches() -> None:
    """onnxscript's rewrite rules are module-level objects whose matchers keep their last match: nodes of
    the graph just exported, whose initializers wrap the module's weights (and constants folded from
    them). That kept a whole graph's weights alive into the next graph's export; drop the matches."""
    import gc

    try:
        from onnxscript.rewriter._matcher import SimplePatternMatcher
    except ImportError:  # another onnxscript layout: nothing known to drop
        return
    with warnings.catch_warnings():
        # isinstance() on torch's deprecated `torch.distributed.reduce_op` object warns (once per export
        # otherwise); only here, where every live object is looked at, and only that warning
        warnings.filterwarnings("ignore", message=r"`torch\.distributed\.reduce_op` is deprecated", category=FutureWarning)
        for obj in gc.get_objects():
            if isinstance(obj, SimplePatternMatcher) and hasattr(obj, "_init_match"):
                obj._init_match(0)  # the match result and current node
                obj._graph = obj._tracer = None  # the graph matched in


def check_onnx(path: Path) -> None:
    """ONNX checker + shape inference (in place) + our own op and I/O rules."""
    try:
        onnx.checker.check_model(str(path))
        onnx.shape_inference.infer_shapes_path(str(path), str(path))
    except Exception as exc:
        raise ExportError(f"{path.name} failed the ONNX checker: {str(exc).splitlines()[0]}") from exc
    model = onnx.load(str(path), load_external_data=False)
    bad = sorted({n.op_type for n in all_nodes(model.graph)} & FORBIDDEN_OPS)
    if bad:
        raise ExportError(
            f"{path.name} contains {', '.join(bad)} — these ops have data-dependent shapes or need "
            "TensorRT ≥ 10.14; the graph wrapper must avoid them"
        )


def all_nodes(graph: onnx.GraphProto):
    """Every node of ``graph``, including those inside If/Loop/Scan subgraphs."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from all_nodes(attr.g)
            for sub in attr.graphs:
                yield from all_nodes(sub)


def read_io(path: Path, spec: GraphSpec) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """Concrete dtypes of the exported graph's I/O, checked against the declaration."""
    model = onnx.load(str(path), load_external_data=False)
    actual = {v.name: v for v in (*model.graph.input, *model.graph.output)}
    entries = []
    for group in (spec.inputs, spec.outputs):
        row = []
        for tensor in group:
            if tensor.name not in actual:
                raise ExportError(
                    f"{path.name} lacks the declared tensor {tensor.name!r} (it has: {', '.join(actual)}) — "
                    "an input unused by the graph was probably dropped by the exporter"
                )
            elem = actual[tensor.name].type.tensor_type.elem_type
            dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem)).name
            rank = len(actual[tensor.name].type.tensor_type.shape.dim)
            if rank != len(tensor.dims):
                raise ExportError(
                    f"{path.name}: tensor {tensor.name!r} has rank {rank}, declared {len(tensor.dims)} ({tensor.dims})"
                )
            row.append(TensorSpec(tensor.name, dtype, tensor.dims))
        entries.append(tuple(row))
    return entries[0], entries[1]
