"""The exported graphs' I/O, declared once as data (architecture §4).

Export (dummy inputs, dynamic shapes, names), the manifest, the runtime's buffers and input checks and
the verification all read these declarations; no tensor-name literal lives anywhere else.

Dimension names:
  B  batch                 S  backbone sequence length (padded to a bucket by the runtime)
  n  images in one vision call       T  image-embedding rows given to the backbone (Σ tokens)
  t  image tokens per image (fixed per vision graph)   E  LLM width (2048)
  H  action horizon (50)   Ds state dim (128)  Da action dim (128)  C  DiT width (1536)
  L  cross-attention blocks (16)  Hc heads (32)  Dh head dim (48)  O  DiT output width (1024)

Float tensors are declared with dtype ``"float"``: they carry the graph's precision (float32 for fp32
exports, float16 for fp16, ...); the manifest records the concrete dtype of every tensor. Stdlib only.
"""

from __future__ import annotations

from dataclasses import dataclass

FLOAT = "float"


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: name, dtype (``"float"`` = the graph's precision), dim names/sizes."""

    name: str
    dtype: str
    dims: tuple[str | int, ...]


@dataclass(frozen=True)
class GraphSpec:
    """One exported graph's declared interface."""

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
        for t in (*self.inputs, *self.outputs):
            if t.name == name:
                return t
        raise KeyError(f"graph {self.kind!r} has no tensor {name!r}")


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


def vision_graph_name(height: int, width: int) -> str:
    """File stem of the vision graph for one preprocessed image size, e.g. ``vision_252x336``."""
    return f"vision_{height}x{width}"


def parse_image_size(text: str) -> tuple[int, int]:
    """``"252x336"`` → (252, 336); raises ValueError with the expected form."""
    parts = text.lower().replace("×", "x").split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"image size {text!r} — expected HxW, e.g. 252x336")
    return int(parts[0]), int(parts[1])
