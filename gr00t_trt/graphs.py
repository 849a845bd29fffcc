"""The exported graphs' I/O and dimensions, declared once as data (architecture §4).

Export (example inputs, dynamic shapes, names), the manifest, the runtime's buffers and input checks,
TensorRT optimisation profiles, bench feeds and verification all read these declarations; how the graphs
feed each other in a control step is declared next door in ``dataflow.py``.

Dimension names (``DIMS`` says which are dynamic and how each is bounded and traced):
  B  batch                 S  backbone sequence length (padded to a bucket by the runtime)
  n  images in one vision call       T  image-embedding rows given to the backbone (Σ tokens)
  h, w, t  a vision graph's image height/width and tokens per image (fixed per vision graph)
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
        """Concrete shape given the size of every named dim (KeyError names a missing one)."""
        return tuple(d if isinstance(d, int) else int(sizes[d]) for d in self.dims)


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


DIMS: dict[str, DimSpec] = {
    d.name: d
    for d in (
        DimSpec("B", "batch", dynamic=True, example=2, trace_max=1024),
        DimSpec("S", "backbone sequence length (text + image tokens, padded to a bucket)", dynamic=True,
                trace_max=32768),
        DimSpec("T", "image-embedding rows given to the backbone (Σ tokens of all images)", dynamic=True,
                trace_max=65536),
        DimSpec("n", "images in one vision call", dynamic=True, example=3, trace_max=1024),
        DimSpec("h", "image height of a vision graph"),
        DimSpec("w", "image width of a vision graph"),
        DimSpec("t", "tokens per image of a vision graph"),
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
    inputs=(_t("images", "uint8", "n", "h", "w", 3),),
    outputs=(_t("image_embeds", FLOAT, "n", "t", "E"),),
    doc="scale to [-1, 1], patchify, SigLIP2 (pos-emb pre-resized to this grid), pixel-unshuffle, mlp1",
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


def graph_name(kind: str, dims: Mapping[str, int] | None = None) -> str:
    """File stem of a graph: the kind, except vision graphs, one per image size (``vision_252x336``)."""
    if kind == "vision":
        if not dims or "h" not in dims or "w" not in dims:
            raise KeyError("a vision graph's name needs its image size: dims h and w")
        return f"vision_{int(dims['h'])}x{int(dims['w'])}"
    return kind


def vision_graph_name(height: int, width: int) -> str:
    """File stem of the vision graph for one preprocessed image size, e.g. ``vision_252x336``."""
    return graph_name("vision", {"h": height, "w": width})


def parse_image_size(text: str) -> tuple[int, int]:
    """``"252x336"`` → (252, 336); raises ValueError with the expected form."""
    parts = text.lower().replace("×", "x").split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"image size {text!r} — expected HxW, e.g. 252x336")
    return int(parts[0]), int(parts[1])


def dynamic_ranges(*, max_batch: int, max_seq_len: int, tokens_per_image: list[int],
                   max_images_per_sample: int = 4) -> dict[str, list[int]]:
    """[min, opt, max] of every dynamic dim from the export options: what TensorRT profiles, the runtime's
    input checks and bench feeds plan for (recorded in the manifest)."""
    max_images = max_images_per_sample * max_batch
    ranges = {
        "B": [1, 1, max_batch],
        "S": [1, min(256, max_seq_len), max_seq_len],
        "n": [1, 1, max_images],
        "T": [min(tokens_per_image), max(tokens_per_image), max_images * max(tokens_per_image)],
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
