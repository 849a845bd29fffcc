"""The exported graphs' I/O and dimensions, declared once as data (architecture §4).

Export (example inputs, dynamic shapes, names), the manifest, the runtime's buffers and input checks,
TensorRT optimisation profiles, bench feeds and verification all read these declarations; how the graphs
feed each other in a control step is declared next door in ``dataflow.py``.

Dimension names (``DIMS`` says which are dynamic and how each is bounded and traced):
  B  batch                 S  backbone sequence length (padded to a bucket by the runtime)
  n  images in one vision call       T  image-embedding rows given to the backbone (Σ tokens)
  r, c  an image's token-grid rows and columns (one vision graph serves every r x c in the export's range)
  h, w, gh, gw, t  derived: image height/width (r·R, c·R), position-grid rows/columns (r·U, c·U) and
     tokens per image (r·c), where R = pixels per token side (28) and U = patches per token side (2)
  Dv vision width (1152)
  E  LLM width (2048)      H  action horizon (50)   Ds state dim (128)  Da action dim (128)
  C  DiT width (1536)      L  cross-attention blocks (16)  Hc heads (32)  Dh head dim (48)
  O  DiT output width (1024)

Float tensors are declared with dtype ``"float"``: the exporter gives each a concrete dtype, recorded in
the manifest, and makes every producer and consumer of a value agree (casts live inside the graphs), so
the runtime never converts between graphs. Stdlib only: the robot side reads it without numpy or torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

FLOAT = "float"


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
    spec = DIMS.get(name)
    if spec is None or not spec.product:
        raise KeyError(name)
    size = 1
    for factor in spec.product:
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


DIMS: dict[str, DimSpec] = {
    d.name: d
    for d in (
        DimSpec("B", "batch", dynamic=True, example=2, trace_max=1024),
        DimSpec("S", "backbone sequence length (text + image tokens, padded to a bucket)", dynamic=True,
                trace_max=32768),
        DimSpec("T", "image-embedding rows given to the backbone (Σ tokens of all images)", dynamic=True,
                trace_max=65536),
        DimSpec("n", "images in one vision call", dynamic=True, example=3, trace_max=1024),
        # example r ≠ c, both distinct from every other example and static size, so both stay symbolic
        DimSpec("r", "token-grid rows of the images of one vision call", dynamic=True, example=5, trace_max=256),
        DimSpec("c", "token-grid columns of the images of one vision call", dynamic=True, example=7,
                trace_max=256),
        DimSpec("h", "image height (token rows x pixels per token side)", product=("r", "R")),
        DimSpec("w", "image width", product=("c", "R")),
        DimSpec("gh", "position-grid rows (token rows x patches per token side)", product=("r", "U")),
        DimSpec("gw", "position-grid columns", product=("c", "U")),
        DimSpec("t", "tokens per image", product=("r", "c")),
        DimSpec("R", "pixels per token side (patch x unshuffle factor)"),
        DimSpec("U", "patches per token side (unshuffle factor)"),
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
}
DYNAMIC_DIMS = tuple(name for name, d in DIMS.items() if d.dynamic)


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


def _t(name: str, dtype: str, *dims: str | int) -> TensorSpec:
    return TensorSpec(name, dtype, tuple(dims))


VISION = GraphSpec(
    kind="vision",
    inputs=(_t("images", "uint8", "n", "h", "w", 3), _t("position_grid", FLOAT, "gh", "gw", "Dv")),
    outputs=(_t("image_embeds", FLOAT, "n", "t", "E"),),
    doc="scale to [-1, 1], patchify, SigLIP2 + the position table resampled to this grid (a per-size "
        "input the host computes once), pixel-unshuffle, mlp1; one graph for every image size",
)

BACKBONE = GraphSpec(
    kind="backbone",
    inputs=(
        _t("input_ids", "int64", "B", "S"),
        _t("image_embeds", FLOAT, "T", "E"),
        _t("image_index", "int64", "B", "S"),
        _t("attention_mask", "bool", "B", "S"),
    ),
    outputs=(_t("backbone_features", FLOAT, "B", "S", "E"),),
    doc="token embedding gather, image rows placed by gather/where, Qwen3 layers, final RMSNorm",
)

DIT_CONTEXT = GraphSpec(
    kind="dit_context",
    inputs=(
        _t("backbone_features", FLOAT, "B", "S", "E"),
        _t("image_mask", "bool", "B", "S"),
        _t("attention_mask", "bool", "B", "S"),
    ),
    outputs=(
        _t("cross_k", FLOAT, "L", "B", "Hc", "S", "Dh"),
        _t("cross_v", FLOAT, "L", "B", "Hc", "S", "Dh"),
        _t("text_bias", FLOAT, "B", 1, 1, "S"),
        _t("image_bias", FLOAT, "B", 1, 1, "S"),
    ),
    doc="VLLN, the to_k/to_v of every cross-attention block once per control step, additive masks",
)

STATE_ENCODER = GraphSpec(
    kind="state_encoder",
    inputs=(_t("state", FLOAT, "B", 1, "Ds"), _t("embodiment_id", "int64", "B")),
    outputs=(_t("state_features", FLOAT, "B", 1, "C"),),
    doc="CategorySpecificMLP on the normalised, padded state",
)

ACTION_ENCODER = GraphSpec(
    kind="action_encoder",
    inputs=(
        _t("actions", FLOAT, "B", "H", "Da"),
        _t("step", "int64", "B"),
        _t("embodiment_id", "int64", "B"),
    ),
    outputs=(_t("action_features", FLOAT, "B", "H", "C"),),
    doc="W1, W2 with its timestep half precomputed per (embodiment, step), swish, W3, + position embedding",
)

DIT = GraphSpec(
    kind="dit",
    inputs=(
        _t("state_features", FLOAT, "B", 1, "C"),
        _t("action_features", FLOAT, "B", "H", "C"),
        _t("cross_k", FLOAT, "L", "B", "Hc", "S", "Dh"),
        _t("cross_v", FLOAT, "L", "B", "Hc", "S", "Dh"),
        _t("text_bias", FLOAT, "B", 1, 1, "S"),
        _t("image_bias", FLOAT, "B", 1, 1, "S"),
        _t("step", "int64", "B"),
    ),
    outputs=(_t("dit_out", FLOAT, "B", "H", "O"),),
    doc="the DiT blocks with AdaLN and output modulation looked up from per-step tables",
)

ACTION_DECODER = GraphSpec(
    kind="action_decoder",
    inputs=(
        _t("dit_out", FLOAT, "B", "H", "O"),
        _t("actions", FLOAT, "B", "H", "Da"),
        _t("embodiment_id", "int64", "B"),
    ),
    outputs=(_t("next_actions", FLOAT, "B", "H", "Da"),),
    doc="CategorySpecificMLP velocity and the Euler update actions + dt * velocity",
)

#: Every graph kind, in the order a control step runs them.
GRAPH_SPECS: dict[str, GraphSpec] = {
    g.kind: g for g in (VISION, BACKBONE, DIT_CONTEXT, STATE_ENCODER, ACTION_ENCODER, DIT, ACTION_DECODER)
}

#: The graphs of the action head (everything after the backbone).
ACTION_HEAD_KINDS = ("dit_context", "state_encoder", "action_encoder", "dit", "action_decoder")


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
    assert set(ranges) == set(DYNAMIC_DIMS), "every dynamic dim needs a range"
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
