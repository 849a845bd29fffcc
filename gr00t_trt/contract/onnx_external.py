"""The external-data files an ONNX graph makes its reader open, read from the protobuf without onnx.

ONNX Runtime and TensorRT's parser open every ``location`` a tensor's ``external_data`` names, relative
to the graph's folder. An export is only as trustworthy as the files its manifest hashes, so the
integrity check needs that list on a robot without the ``onnx`` package: this walks the few messages
that can hold tensors (model → graph → initializers, nodes' attributes, subgraphs, functions) and skips
everything else by its length. Field numbers are onnx.proto's. Stdlib only.
"""

from __future__ import annotations

import mmap
from pathlib import Path

from ..base.errors import ManifestError

# message -> {field number: message kind of that (length-delimited) field}
_FIELDS: dict[str, dict[int, str]] = {
    "model": {7: "graph", 25: "function"},
    "function": {7: "node"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
    "tensor": {13: "entry"},
    "entry": {},
}
_MAX_NESTING = 64  # subgraphs inside subgraphs; any real model nests a few levels


def _varint(buf, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise ValueError("truncated or overlong varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _skip_value(buf, pos: int, end: int, wire: int) -> tuple[int, int]:
    """(start, end) of one field's value; groups (wire types 3/4, which protobuf parsers still accept for
    unknown fields) are skipped whole, so no field can hide behind them."""
    if wire == 0:
        return pos, _varint(buf, pos, end)[1]
    if wire == 1:
        return pos, pos + 8
    if wire == 5:
        return pos, pos + 4
    if wire == 2:
        length, pos = _varint(buf, pos, end)
        return pos, pos + length
    if wire == 3:
        depth, start = 1, pos
        while depth:
            key, pos = _varint(buf, pos, end)
            inner = key & 7
            if inner in (3, 4):
                depth += 1 if inner == 3 else -1
            else:
                pos = _skip_value(buf, pos, end, inner)[1]
            if pos > end:
                raise ValueError("group runs past its message")
        return start, pos
    raise ValueError(f"unexpected protobuf wire type {wire}")


def _fields(buf, pos: int, end: int):
    """(field number, wire type, value start, value end) of each field of one message."""
    while pos < end:
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        start, after = _skip_value(buf, pos, end, wire)
        if after > end:
            raise ValueError("field runs past its message")
        yield number, wire, start, after
        pos = after


def _locations(buf, start: int, end: int) -> set[str]:
    found: set[str] = set()
    stack = [("model", start, end, 0)]
    while stack:
        kind, pos, stop, depth = stack.pop()
        if depth > _MAX_NESTING:
            raise ValueError(f"messages nested deeper than {_MAX_NESTING}")
        if kind == "entry":
            items = {n: bytes(buf[a:b]) for n, w, a, b in _fields(buf, pos, stop) if w == 2}
            if items.get(1) == b"location":
                found.add(items.get(2, b"").decode("utf-8"))
            continue
        for number, wire, a, b in _fields(buf, pos, stop):
            inner = _FIELDS[kind].get(number)
            if inner is not None and wire == 2:
                stack.append((inner, a, b, depth + 1))
    return found


def external_data_files(path: str | Path) -> set[str]:
    """The ``location`` of every external tensor of the graph at ``path`` (relative to its folder)."""
    path = Path(path)
    try:
        with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            return _locations(buf, 0, len(buf))
    except ValueError as exc:
        raise ManifestError(f"{path} is not a readable ONNX graph ({exc}) — re-export it") from None
    except UnicodeDecodeError:
        raise ManifestError(f"{path} names an external-data file that is not UTF-8 — re-export it") from None
    except OSError as exc:
        raise ManifestError(f"cannot read {path}: {exc.strerror}") from None
