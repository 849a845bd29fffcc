"""The VL self-attention between VLLN and the DiT (``action_head.vl_self_attention``, spec §3.7).

Blocks of x += attn(LN1(x)); x += FF(LN3(x)) with affine LayerNorms (eps 1e-5), biased 32×64 heads, a
tanh-GELU 4× feed-forward, no positional encoding and no timestep. The attention and feed-forward are
N1.6's DiT modules (same diffusers key names). The original passes **no mask**: every position,
left padding included, is attended to; ``attention_mask`` exists only so that a runtime can hide the
padding *it* adds (bucket padding), which the original never sees.
"""

from __future__ import annotations

import torch
from torch import nn

from ...model.action_head import NORM_EPS, Attention, FeedForward
from .config import VLSelfAttentionConfig


class VLSelfAttentionBlock(nn.Module):
    def __init__(self, dim: int, heads: int, head_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=NORM_EPS)
        self.attn1 = Attention(dim, dim, heads, head_dim)
        self.norm3 = nn.LayerNorm(dim, eps=NORM_EPS)
        self.ff = FeedForward(dim, 4 * dim)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn1(self.norm1(x), attention_mask=attention_mask)
        return x + self.ff(self.norm3(x))


class VLSelfAttention(nn.Module):
    """``SelfAttentionTransformer``: the blocks in order, no final norm; identity with no blocks."""

    def __init__(self, dim: int, config: VLSelfAttentionConfig | None):
        super().__init__()
        blocks = [] if config is None else [
            VLSelfAttentionBlock(dim, config.num_attention_heads, config.attention_head_dim)
            for _ in range(config.num_layers)
        ]  # fmt: skip
        self.transformer_blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """[B, S, E] → [B, S, E]; ``attention_mask`` bool [B, S] (None = the original: attend to all)."""
        for block in self.transformer_blocks:
            x = block(x, attention_mask)
        return x
