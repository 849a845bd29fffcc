"""GR00T N1.7's export contract: its graphs' I/O, its dims and its control step, declared as data.

Same shape of chain as N1.6 (vision per image size → backbone → dit_context → the action unit), with
N1.7's differences made explicit in the declarations:
- vision takes the camera images (uint8, as N1.6: patchify, the temporal duplication and merge-block
  ordering happen in the graph) and three per-size tables the host computes once per size (the learned
  position table resampled to the patch grid, the 2-D rotary cos/sin), each [gh, gw, X] in raster order
  (one dynamic factor per axis, which torch.export can trace; the graph reorders them to merge-block
  order as it does the patches); it returns the merged image
  embeddings and the three DeepStack features, each one row block per image;
- backbone adds the DeepStack features after LLM layers 0-2 and takes M-RoPE position ids [3, B, S]
  computed on the host; it returns the features *before* the final norm;
- dit_context adds the VL self-attention, which attends to the original's own (left) batch padding but
  must not see the runtime's bucket padding: ``original_mask`` marks the columns the original model has.
The action-head graphs are N1.6's, at N1.7's widths.
"""

from __future__ import annotations

from ...contract.dataflow import GRID, OBS, Contract, Stage
from ...contract.graphs import FLOAT, SHARED_DIMS, DimSpec, GraphSpec, TensorSpec
from ..n16 import contract as n16
from ..n16.contract import ACTION_DECODER, ACTION_ENCODER, DIT, STATE_ENCODER

#: the DeepStack features the vision graph returns and the backbone adds after layers 0, 1, 2
DEEPSTACK = ("deepstack_0", "deepstack_1", "deepstack_2")


def _t(name: str, dtype: str, *dims: str | int) -> TensorSpec:
    return TensorSpec(name, dtype, tuple(dims))


DIMS: dict[str, DimSpec] = {
    d.name: d
    for d in (
        *SHARED_DIMS,
        DimSpec("Dr", "vision attention head dim (the rotary tables' width)"),
    )
}

VISION = GraphSpec(
    kind="vision",
    inputs=(
        _t("images", "uint8", "n", "h", "w", 3),
        _t("position_table", FLOAT, "gh", "gw", "Dv"),
        _t("rotary_cos", FLOAT, "gh", "gw", "Dr"),
        _t("rotary_sin", FLOAT, "gh", "gw", "Dr"),
    ),
    outputs=(_t("image_embeds", FLOAT, "n", "t", "E"), *(_t(name, FLOAT, "n", "t", "E") for name in DEEPSTACK)),
    doc="normalise to [-1, 1], patchify in merge-block order (each frame twice: temporal patch 2), patch "
        "embedding + the resampled position table, Qwen3-VL blocks with 2-D RoPE (per-size tables from the "
        "host), the merger and the three DeepStack mergers; one graph for every image size",
)

BACKBONE = GraphSpec(
    kind="backbone",
    inputs=(
        _t("input_ids", "int64", "B", "S"),
        _t("image_embeds", FLOAT, "T", "E"),
        *(_t(name, FLOAT, "T", "E") for name in DEEPSTACK),
        _t("image_index", "int64", "B", "S"),
        _t("position_ids", "int64", 3, "B", "S"),
        _t("attention_mask", "bool", "B", "S"),
    ),
    outputs=(_t("backbone_features", FLOAT, "B", "S", "E"),),
    doc="token embedding gather, image rows placed by gather/where, Qwen3-VL text layers with interleaved "
        "M-RoPE from host position ids and DeepStack added after layers 0-2; read before the final norm",
)

DIT_CONTEXT = GraphSpec(
    kind="dit_context",
    inputs=(
        _t("backbone_features", FLOAT, "B", "S", "E"),
        _t("image_mask", "bool", "B", "S"),
        _t("attention_mask", "bool", "B", "S"),
        _t("original_mask", "bool", "B", "S"),
    ),
    outputs=n16.DIT_CONTEXT.outputs,  # the cross K/V and masks the DiT reads, as N1.6's
    doc="VLLN, the VL self-attention (keys: the original's columns, its own padding included), the to_k/to_v "
        "of every cross-attention block once per control step, additive masks",
)

#: Every graph kind, in the order a control step runs them (the action unit's four are N1.6's).
GRAPH_SPECS: dict[str, GraphSpec] = {
    g.kind: g for g in (VISION, BACKBONE, DIT_CONTEXT, STATE_ENCODER, ACTION_ENCODER, DIT, ACTION_DECODER)
}

CONTROL_STEP: tuple[Stage, ...] = (
    Stage("vision", {"images": OBS, "position_table": GRID, "rotary_cos": GRID, "rotary_sin": GRID}, "vision",
          per_image_size=True),
    Stage("backbone", {"input_ids": OBS, "image_embeds": "vision", **{name: "vision" for name in DEEPSTACK},
                       "image_index": OBS, "position_ids": OBS, "attention_mask": OBS}, "backbone"),
    Stage("dit_context", {"backbone_features": "backbone", "image_mask": OBS, "attention_mask": OBS,
                          "original_mask": OBS}, "dit_context"),
    *n16.CONTROL_STEP[3:],  # the action unit: N1.6's stages
)

CONTRACT = Contract(family="n1.7", graphs=GRAPH_SPECS, dims=DIMS, control_step=CONTROL_STEP)
