"""One TensorRT optimisation profile per graph, from the manifest's declared dimension ranges.

A dim of a graph input is resolved, in order: a literal size; the graph's own ``dims`` (vision h, w, t);
the export's static ``dims`` (E, H, C, ...); the export's ``dynamic_dims`` [min, opt, max] (B, S, T, n).
Anything else is a manifest the engines cannot be built for, said in one line.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import EngineError
from ..manifest import GraphEntry, Manifest


@dataclass(frozen=True)
class InputProfile:
    """min/opt/max shape of one graph input."""

    name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    @property
    def is_static(self) -> bool:
        return self.min == self.opt == self.max


@dataclass(frozen=True)
class GraphProfile:
    """The optimisation profile of one graph: every input, in declaration order."""

    graph: str
    inputs: tuple[InputProfile, ...]

    def input(self, name: str) -> InputProfile:
        for p in self.inputs:
            if p.name == name:
                return p
        raise EngineError(f"profile of graph {self.graph!r} has no input {name!r}")

    def to_dict(self) -> dict[str, dict[str, list[int]]]:
        return {p.name: {"min": list(p.min), "opt": list(p.opt), "max": list(p.max)} for p in self.inputs}


def dim_range(manifest: Manifest, entry: GraphEntry, dim: str | int) -> tuple[int, int, int]:
    """(min, opt, max) of one declared dim of ``entry``."""
    if isinstance(dim, int):
        return dim, dim, dim
    if dim in entry.dims:
        size = int(entry.dims[dim])
        return size, size, size
    if dim in manifest.dims:
        size = int(manifest.dims[dim])
        return size, size, size
    if dim in manifest.dynamic_dims:
        low, opt, high = manifest.dynamic_dims[dim]
        if not low <= opt <= high:
            raise EngineError(
                f"dynamic dim {dim!r} of the manifest has min/opt/max {low}/{opt}/{high} — expected min ≤ opt ≤ max"
            )
        return int(low), int(opt), int(high)
    raise EngineError(
        f"graph {entry.name!r} uses dim {dim!r}, which the manifest neither fixes nor bounds — "
        "expected it in the graph's dims, the export's dims or dynamic_dims; re-export"
    )


def graph_profile(manifest: Manifest, entry: GraphEntry) -> GraphProfile:
    """The profile TensorRT builds ``entry`` for (one per graph: the runtime pads into it)."""
    inputs = []
    for tensor in entry.inputs:
        ranges = [dim_range(manifest, entry, d) for d in tensor.dims]
        inputs.append(
            InputProfile(
                tensor.name,
                tuple(r[0] for r in ranges),
                tuple(r[1] for r in ranges),
                tuple(r[2] for r in ranges),
            )
        )
    return GraphProfile(entry.name, tuple(inputs))
