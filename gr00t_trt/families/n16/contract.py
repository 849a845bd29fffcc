"""GR00T N1.6's export contract: its graphs' I/O, its dims and its control step, declared as data
(architecture §4).

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

An input's source in ``CONTROL_STEP`` is explained in ``contract/dataflow.py``.
"""

from __future__ import annotations

from ...contract.dataflow import CARRY, GRID, OBS, STEP, STEP_WEIGHT, Contract, Stage
from ...contract.graphs import FLOAT, SHARED_DIMS, DimSpec, GraphSpec, TensorSpec


def _t(name: str, dtype: str, *dims: str | int) -> TensorSpec:
    return TensorSpec(name, dtype, tuple(dims))


DIMS: dict[str, DimSpec] = {d.name: d for d in SHARED_DIMS}


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
        _t(STEP_WEIGHT, FLOAT, "B", "H"),
    ),
    outputs=(_t("next_actions", FLOAT, "B", "H", "Da"),),
    doc="CategorySpecificMLP velocity and the Euler update actions + (dt * velocity) * step_weight per row "
        "(1 everywhere: the plain sampler; 0 / a ramp on prefix rows: real-time chunking)",
)

#: Every graph kind, in the order a control step runs them.
GRAPH_SPECS: dict[str, GraphSpec] = {
    g.kind: g for g in (VISION, BACKBONE, DIT_CONTEXT, STATE_ENCODER, ACTION_ENCODER, DIT, ACTION_DECODER)
}

#: The graphs of the action head (everything after the backbone).
ACTION_HEAD_KINDS = ("dit_context", "state_encoder", "action_encoder", "dit", "action_decoder")


CONTROL_STEP: tuple[Stage, ...] = (
    Stage("vision", {"images": OBS, "position_grid": GRID}, "vision", per_image_size=True),
    Stage("backbone", {"input_ids": OBS, "image_embeds": "vision", "image_index": OBS, "attention_mask": OBS},
          "backbone"),
    Stage("dit_context", {"backbone_features": "backbone", "image_mask": OBS, "attention_mask": OBS}, "dit_context"),
    Stage("state_encoder", {"state": OBS, "embodiment_id": OBS}, "action_head"),
    Stage("action_encoder", {"actions": CARRY, "step": STEP, "embodiment_id": OBS}, "action_head", per_step=True),
    Stage("dit", {"state_features": "state_encoder", "action_features": "action_encoder", "cross_k": "dit_context",
                  "cross_v": "dit_context", "text_bias": "dit_context", "image_bias": "dit_context", "step": STEP},
          "action_head", per_step=True),
    Stage("action_decoder", {"dit_out": "dit", "actions": CARRY, "embodiment_id": OBS, STEP_WEIGHT: OBS},
          "action_head", per_step=True),
)

CONTRACT = Contract(family="n1.6", graphs=GRAPH_SPECS, dims=DIMS, control_step=CONTROL_STEP)
