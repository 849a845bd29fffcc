"""The sizes of an export's graphs, read from their ``.onnx`` files without onnx or torch.

``inspect EXPORT`` and ``bench`` run on the robot install, which has neither: an ``.onnx`` file is a protobuf
message, and protobuf (a dependency of onnxruntime) parses it once told the few fields we read — the numbers
below are those of the ONNX schema (onnx.proto). Every other field, the external weights' locations among
them, is skipped, and the ``.onnx.data`` weights themselves are never read: dims and dtypes live in the
protobuf.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..base.errors import ManifestError

#: bytes per element of the ONNX TensorProto data types an export holds (FLOAT, UINT8, INT8, UINT16, INT16,
#: INT32, INT64, BOOL, FLOAT16, DOUBLE, UINT32, UINT64, BFLOAT16, the four FLOAT8 types)
ONNX_ELEMENT_BYTES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2,
                      17: 1, 18: 1, 19: 1, 20: 1}
#: the part of the ONNX schema read here: message -> (field, number, scalar type or message, repeated)
_SCHEMA: dict[str, tuple[tuple[str, int, str, bool], ...]] = {
    "ModelProto": (("graph", 7, "GraphProto", False),),
    "GraphProto": (("node", 1, "NodeProto", True), ("initializer", 5, "TensorProto", True)),
    "NodeProto": (("input", 1, "string", True), ("output", 2, "string", True), ("op_type", 4, "string", False),
                  ("attribute", 5, "AttributeProto", True)),
    "AttributeProto": (("name", 1, "string", False), ("t", 5, "TensorProto", False)),
    "TensorProto": (("dims", 1, "int64", True), ("data_type", 2, "int32", False), ("name", 8, "string", False)),
}


@dataclass(frozen=True)
class GraphSize:
    """Bytes of one exported graph on disk (``.onnx`` + ``.onnx.data``), of its weights as stored, and the
    weight bytes a TensorRT engine built from it is expected to hold (fp8-quantised weights at 1 byte,
    others at their stored dtype; activation memory not included)."""

    name: str
    precision: str
    on_disk: int
    engine_weights: int
    stored_weights: int = 0


@functools.cache
def _model_class():
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    package = "gr00t_trt.onnx_subset"
    scalar = {"string": descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
              "int64": descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
              "int32": descriptor_pb2.FieldDescriptorProto.TYPE_INT32}
    schema = descriptor_pb2.FileDescriptorProto(name="gr00t_trt_onnx_subset.proto", package=package, syntax="proto2")
    for message, fields in _SCHEMA.items():
        declared = schema.message_type.add(name=message)
        for name, number, kind, repeated in fields:
            field = declared.field.add(name=name, number=number)
            field.label = field.LABEL_REPEATED if repeated else field.LABEL_OPTIONAL
            if kind in scalar:
                field.type = scalar[kind]
            else:
                field.type, field.type_name = field.TYPE_MESSAGE, f".{package}.{kind}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(schema)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.ModelProto"))


def _elements(tensor) -> int:
    count = 1
    for dim in tensor.dims:
        count *= dim
    return count


def weight_bytes(path: str | Path) -> tuple[int, int]:
    """(stored, engine) bytes of a graph's initializers and Constant tensors; engine counts the weights
    a QuantizeLinear reads (fp8) at one byte."""
    from google.protobuf.message import DecodeError

    model = _model_class()()
    try:
        model.ParseFromString(Path(path).read_bytes())
    except (OSError, DecodeError) as exc:
        raise ManifestError(f"cannot read the graph {path}: {exc} — expected an ONNX file written by the export") from None
    graph = model.graph
    quantised = {node.input[0] for node in graph.node if node.op_type == "QuantizeLinear" and node.input}
    tensors = [(t.name, t) for t in graph.initializer]
    tensors += [(n.output[0] if n.output else "", a.t) for n in graph.node if n.op_type == "Constant"
                for a in n.attribute if a.name == "value"]
    stored = engine = 0
    for name, tensor in tensors:
        size = ONNX_ELEMENT_BYTES.get(tensor.data_type, 4)
        stored += _elements(tensor) * size
        engine += _elements(tensor) * (1 if name in quantised else size)
    return stored, engine


def graph_sizes(folder: str | Path, manifest: Any) -> list[GraphSize]:
    """Size of every graph of an export directory at its recorded precision."""
    folder = Path(folder)
    result = []
    for name, entry in manifest.graphs.items():
        path = folder / entry.file
        data = path.with_name(path.name + ".data")
        on_disk = path.stat().st_size + (data.stat().st_size if data.exists() else 0)
        stored, engine = weight_bytes(path)
        result.append(GraphSize(name, entry.precision, on_disk, engine, stored))
    return result


def stored_weight_bytes(folder: str | Path, graphs: Mapping[str, Any]) -> dict[str, int]:
    """Bytes of every graph's initializers and constant tensors as stored (what the roofline cross-checks)."""
    return {name: weight_bytes(Path(folder) / entry.file)[0] for name, entry in graphs.items()}
