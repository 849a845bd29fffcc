"""``backbone`` graph: token ids + image embeddings → post-norm LLM features (graphs.BACKBONE).

Same function as ``EagleBackbone.forward`` with export-friendly pieces:
- image rows are placed with a Gather (``image_index`` names the row of ``image_embeds`` for every
  position; its value is ignored where the token is not ``<IMG_CONTEXT>``) and a Where — no NonZero,
  no boolean indexing, no data-dependent shapes;
- the causal + padding additive mask is built in the graph from ``attention_mask``
  (``causal_padding_bias``: padding rows attend to themselves so no row is ever fully masked);
- rotary cos/sin are computed in fp32 from frequencies kept outside the module's buffers, so casting
  the wrapper to fp16 does not round the frequencies (which would shift angles at long positions);
- attention is decomposed by the exporter (opset 21): no opset-23 Attention / RMSNormalization.
Needs at least one image row (T ≥ 1); a prompt without images passes one dummy row.
"""

from __future__ import annotations

import torch
from torch import nn

from ..backbone import EagleBackbone, causal_padding_bias
from .vision import detached_backbone


class BackboneGraph(nn.Module):
    """(input_ids, image_embeds, image_index, attention_mask) → backbone_features [B, S, E]."""

    def __init__(self, backbone: EagleBackbone, dtype: torch.dtype | None = None):
        super().__init__()
        self.image_token_index = backbone.config.backbone.image_token_index
        llm = detached_backbone(backbone, dtype).llm
        self.embed_tokens = llm.embed_tokens
        self.layers = llm.layers
        self.norm = llm.norm
        # plain attribute, not a buffer: Module.to(dtype) must not round it (exported as a constant)
        self.inv_freq = llm.rotary_emb.inv_freq.detach().to(torch.float32).clone()
        self.rope_scaling = float(llm.rotary_emb.attention_scaling)

    def rotary(self, seq_len_like: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin [1, S, Dh] for positions 0..S−1 (half-rotation layout: frequencies repeated)."""
        positions = torch.arange(seq_len_like.shape[1], device=seq_len_like.device).to(torch.float32)  # [S]
        freqs = positions[:, None] * self.inv_freq.to(seq_len_like.device)[None, :]  # [S, Dh/2]
        angles = torch.cat([freqs, freqs], dim=-1)[None]  # [1, S, Dh]
        return (angles.cos() * self.rope_scaling).to(dtype), (angles.sin() * self.rope_scaling).to(dtype)

    def forward(
        self,
        input_ids: torch.Tensor,
        image_embeds: torch.Tensor,
        image_index: torch.Tensor,
        attention_mask: torch.Tensor,
    ) -> torch.Tensor:
        embeds = self.embed_tokens(input_ids)  # [B, S, E]
        rows = image_index.clamp(min=0, max=image_embeds.shape[0] - 1)  # [B, S], any value is safe
        placed = torch.index_select(image_embeds, 0, rows.reshape(-1))  # [B·S, E]
        placed = placed.reshape(embeds.shape)  # [B·S, E] -> [B, S, E]
        is_image = (input_ids == self.image_token_index)[..., None]  # [B, S, 1]
        hidden = torch.where(is_image, placed.to(embeds.dtype), embeds)  # [B, S, E]
        bias = causal_padding_bias(attention_mask, hidden.dtype)  # [B, 1, S, S]
        cos_sin = self.rotary(input_ids, hidden.dtype)
        for layer in self.layers:
            hidden = layer(hidden, attention_mask=bias, position_embeddings=cos_sin)
        return self.norm(hidden)  # [B, S, E]
