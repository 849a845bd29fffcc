"""One TensorRT optimisation profile per graph, from the graph declarations and the manifest's ranges.

A dim of a graph input is a literal size, a static dim (the graph's own ``dims`` or the export's — E, H,
C, R, ...), a dynamic one bounded by the manifest's ``dynamic_dims`` [min, opt, max] (B, S, T, n, r, c) or
one derived from them (the vision graph's h = r·R, gh = r·U: its min/opt/max follow r's, so the images and
the position grid agree at each of the three shapes); ``graphs.shape_ranges`` resolves them. Anything else is a manifest the
engines cannot be built for, said in one line.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..base.errors import EngineError
from ..contract.graphs import shape_ranges
from ..contract.manifest import GraphEntry, Manifest


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


def graph_profile(manifest: Manifest, entry: GraphEntry) -> GraphProfile:
    """The profile TensorRT builds ``entry`` for (one per graph: the runtime pads into it), from the
    graph declarations' ``shape_ranges``: static dims from the graph and the export, dynamic ones from the
    manifest's [min, opt, max]."""
    for dim, (low, opt, high) in manifest.dynamic_dims.items():  # derived dims (h = r·R) inherit the order
        if not low <= opt <= high:
            raise EngineError(f"dynamic dim {dim!r} of the manifest has min/opt/max {low}/{opt}/{high} — "
                              "expected min ≤ opt ≤ max")
    inputs = []
    for tensor in entry.inputs:
        try:
            low, opt, high = shape_ranges(tensor, manifest.sizes(entry), manifest.dynamic_dims)
        except KeyError as exc:
            raise EngineError(
                f"graph {entry.name!r} uses dim {exc.args[0]!r}, which the manifest neither fixes nor bounds — "
                "expected it in the graph's dims, the export's dims or dynamic_dims; re-export"
            ) from None
        inputs.append(InputProfile(tensor.name, low, opt, high))
    return GraphProfile(entry.name, tuple(inputs))
