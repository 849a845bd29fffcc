"""``dit_context`` graph: backbone features → the DiT's stacked cross K/V and mask biases, once per
control step (``contract.DIT_CONTEXT``).

N1.6's graph (VLLN, every cross block's to_k/to_v as one GEMM, additive biases; ``DitContextGraph``)
with N1.7's VL self-attention between VLLN and the projections. The original passes that attention no
mask: it attends to every column it was given, its own left batch padding included, and so does this
graph. But a runtime pads prompts further to a shape bucket, and those columns were never part of the
original's input: ``original_mask`` marks the columns the original has, and only they are keys. With
it all True the graph is the original's math; with extra columns marked False the original columns
come out as the original computes them without those columns. The mask is N1.6's finite additive
bias (``mask_bias``), which SDPA adds to the scores: no -inf, no NaN guard in the graph.
"""

from __future__ import annotations

import torch

from ....export.dit_context import DitContextGraph, mask_bias
from ..model import N17ActionHead
from .weights import detached


class N17DitContextGraph(DitContextGraph):
    """(backbone_features, image_mask, attention_mask, original_mask) → (cross_k, cross_v, text_bias, image_bias)."""

    def __init__(self, head: N17ActionHead, dtype: torch.dtype | None = None):
        super().__init__(head, dtype)
        self.vl_self_attention = detached(head.vl_self_attention, dtype or head.dtype)

    def forward(self, backbone_features: torch.Tensor, image_mask: torch.Tensor, attention_mask: torch.Tensor,
                original_mask: torch.Tensor):
        vl = self.vlln(backbone_features)
        keys = mask_bias(original_mask, vl.dtype)[:, 0, 0]  # [B, S] additive: finite, no NaN guard needed
        vl = self.vl_self_attention(vl, keys)  # keys: the original's columns only
        return self.cross_context(vl, image_mask, attention_mask)
