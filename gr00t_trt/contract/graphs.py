"""The vocabulary in which every model family declares its exported graphs' I/O and dimensions (architecture
§4); the declarations themselves live with each family (``families/<name>/contract.py``).

Export (example inputs, dynamic shapes, names), the manifest, the runtime's buffers and input checks,
TensorRT optimisation profiles, bench feeds and verification all read these declarations; how the graphs
feed each other in a control step is declared with the ``Stage``s of ``dataflow.py``.

Dimensions are named (B batch, S sequence, n images per vision call, r/c token-grid rows/columns, ...);
each family's ``DIMS`` says which are dynamic and how each is bounded and traced, and ``DERIVED`` below
which are products of others.

Float tensors are declared with dtype ``"float"``: the exporter gives each a concrete dtype, recorded in
the manifest, and makes every producer and consumer of a value agree (casts live inside the graphs), so
the runtime never converts between graphs. Stdlib only: the robot side reads it without numpy or torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

FLOAT = "float"

#: Derived dims, the same products in every family (a family's ``DimSpec.product`` repeats them for its
#: readers; a test checks they agree): image height/width, patch-grid rows/columns and tokens per
#: image, from the token grid (r, c), pixels per token side R and patches per token side U.
DERIVED: dict[str, tuple[str, ...]] = {
    "h": ("r", "R"), "w": ("c", "R"), "gh": ("r", "U"), "gw": ("c", "U"), "t": ("r", "c"),
}


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: name, dtype (a numpy dtype name, or ``"float"`` in a declaration), and
    its dims — names (resolved per export, graph or call) or fixed sizes."""

    name: str
    dtype: str
    dims: tuple[str | int, ...]

    def shape(self, sizes: Mapping[str, int]) -> tuple[int, ...]:
        """Concrete shape given the size of every named dim, derived ones (``DimSpec.product``) computed
        unless given (KeyError names a missing one)."""
        return tuple(d if isinstance(d, int) else dim_size(d, sizes) for d in self.dims)


def dim_size(name: str, sizes: Mapping[str, int]) -> int:
    """Size of dim ``name``: from ``sizes``, or the product of its factors for a derived dim."""
    if name in sizes:
        return int(sizes[name])
    factors = DERIVED.get(name)
    if factors is None:
        raise KeyError(name)
    size = 1
    for factor in factors:
        size *= dim_size(factor, sizes)
    return size


@dataclass(frozen=True)
class DimSpec:
    """One named dimension. Dynamic dims vary per call; the export options bound them ([min, opt, max],
    recorded in the manifest's ``dynamic_dims``) and ``example`` is the size used to trace (chosen distinct
    from every static size so torch.export keeps it symbolic; None: derived from other example sizes)."""

    name: str
    doc: str
    dynamic: bool = False
    example: int | None = None
    trace_max: int | None = None  # generous symbolic bound for torch.export; profiles use the manifest's
    #: a derived dim is the product of these dims (h = r·R): never bounded or traced on its own
    product: tuple[str, ...] = ()


#: The dims every family's graphs share: the dynamic batch, sequence and image dims, the derived image
#: dims and the widths of the action head. A family's ``DIMS`` is these plus its own.
SHARED_DIMS: tuple[DimSpec, ...] = (
    DimSpec("B", "batch", dynamic=True, example=2, trace_max=1024),
    DimSpec("S", "backbone sequence length (text + image tokens, padded to a bucket)", dynamic=True,
            trace_max=32768),
    DimSpec("T", "image-embedding rows given to the backbone (Σ tokens of all images)", dynamic=True,
            trace_max=65536),
    DimSpec("n", "images in one vision call", dynamic=True, example=3, trace_max=1024),
    # example r ≠ c, both distinct from every other example and static size, so both stay symbolic
    DimSpec("r", "token-grid rows of the images of one vision call", dynamic=True, example=5, trace_max=256),
    DimSpec("c", "token-grid columns of the images of one vision call", dynamic=True, example=7, trace_max=256),
    DimSpec("h", "image height (token rows x pixels per token side)", product=DERIVED["h"]),
    DimSpec("w", "image width", product=DERIVED["w"]),
    DimSpec("gh", "patch-grid rows (token rows x patches per token side)", product=DERIVED["gh"]),
    DimSpec("gw", "patch-grid columns", product=DERIVED["gw"]),
    DimSpec("t", "tokens per image", product=DERIVED["t"]),
    DimSpec("R", "pixels per token side (patch x patches per token side)"),
    DimSpec("U", "patches per token side (unshuffle / spatial merge factor)"),
    DimSpec("Dv", "vision width"),
    DimSpec("E", "LLM width"),
    DimSpec("H", "action horizon"),
    DimSpec("Ds", "padded state dim"),
    DimSpec("Da", "padded action dim"),
    DimSpec("C", "DiT input width"),
    DimSpec("L", "cross-attention blocks"),
    DimSpec("Hc", "DiT attention heads"),
    DimSpec("Dh", "DiT attention head dim"),
    DimSpec("O", "DiT output width"),
)


@dataclass(frozen=True)
class GraphSpec:
    """One exported graph kind's declared interface."""

    kind: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    doc: str

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def tensor(self, name: str) -> TensorSpec:
        return find_tensor(self.kind, (*self.inputs, *self.outputs), name)


def find_tensor(graph: str, tensors: tuple[TensorSpec, ...], name: str) -> TensorSpec:
    """The tensor called ``name`` among a graph's tensors — the one lookup every layer uses."""
    for t in tensors:
        if t.name == name:
            return t
    raise KeyError(f"graph {graph!r} has no tensor {name!r} — it has: {', '.join(t.name for t in tensors)}")


def graph_name(kind: str) -> str:
    """File stem of a graph: its kind (one graph per kind; the vision graph serves every image size)."""
    return kind


def parse_image_size(text: str) -> tuple[int, int]:
    """``"252x336"`` → (252, 336); raises ValueError with the expected form."""
    parts = text.lower().replace("×", "x").split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"image size {text!r} — expected HxW, e.g. 252x336")
    return int(parts[0]), int(parts[1])


def dynamic_ranges(*, max_batch: int, max_seq_len: int, token_grids: list[tuple[int, int]],
                   max_images_per_sample: int = 4) -> dict[str, list[int]]:
    """[min, opt, max] of every dynamic dim from the export options: what TensorRT profiles, the runtime's
    input checks and bench feeds plan for (recorded in the manifest).

    ``token_grids``: (rows, columns) of the token grid of every image size the export names, the first
    one the most common (the profiles' opt). Rows and columns are each bounded by the extremes of all of
    them, so a portrait and a landscape size make one range that serves both and everything between."""
    max_images = max_images_per_sample * max_batch
    grids = token_grids or [(1, 1)]
    rows, cols = [g[0] for g in grids], [g[1] for g in grids]
    r = [min(rows), grids[0][0], max(rows)]
    c = [min(cols), grids[0][1], max(cols)]
    ranges = {
        "B": [1, 1, max_batch],
        "S": [1, min(256, max_seq_len), max_seq_len],
        "n": [1, 1, max_images],
        "T": [r[0] * c[0], r[1] * c[1], max_images * r[2] * c[2]],
        "r": r,
        "c": c,
    }
    return ranges


def shape_ranges(tensor: TensorSpec, static: Mapping[str, int],
                 ranges: Mapping[str, list[int]]) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(min, opt, max) shapes of one tensor: static dims from ``static`` (the export's and the graph's own
    sizes), dynamic ones from ``ranges`` — one TensorRT optimisation-profile entry."""
    shapes = []
    for position in range(3):
        sizes = {**static, **{name: bounds[position] for name, bounds in ranges.items()}}
        shapes.append(tensor.shape(sizes))
    return shapes[0], shapes[1], shapes[2]
