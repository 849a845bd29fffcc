"""``dit_context`` graph: everything of the DiT that depends only on the backbone, once per control step.

The original recomputes the cross-attention K/V projections of all 16 cross blocks at every denoising
step, although their input (the VLLN'd backbone features) does not change between steps. This graph
applies VLLN and all those projections once — as a single GEMM over the stacked ``to_k`` (and ``to_v``)
weights — and turns the boolean masks into the additive biases the ``dit`` graph adds to its scores.

Mask bias value: 0 where a key may be attended, ``finfo(dtype).min / 2`` elsewhere (−1.7e38 in fp32,
−32752 in fp16): finite, so no −inf ever reaches a softmax (a fully masked row cannot become NaN), and
half of the minimum leaves room to add a score without overflowing. For a row with at least one
attended key, exp(bias − max) underflows to exactly 0 in every float type, so masked keys get weight 0.

Fully masked rows (a sample without image tokens meets the image blocks with no key to attend): the
reference's SDPA with a boolean mask returns 0 for such a row (PyTorch ≥ 2.5 "safe softmax"; older
versions gave NaN). A finite bias alone would give the uniform average of all values instead, so this
graph also zeroes each block's V at the positions its mask excludes (one multiply per control step).
Attended rows are unchanged (excluded keys had weight 0 anyway) and a fully masked row averages zeros:
0, exactly like the reference.
"""

from __future__ import annotations

import torch
from torch import nn

from ..model.action_head import Fp32LayerNorm, Gr00tActionHead, cross_block_indices, dit_block_kinds


def mask_bias(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Boolean attend-mask [B, S] → additive bias [B, 1, 1, S]: 0 (attend) / finfo.min/2 (masked)."""
    bias = torch.zeros_like(mask, dtype=dtype).masked_fill(~mask, torch.finfo(dtype).min / 2)  # [B, S]
    return bias[:, None, None, :]  # [B, S] -> [B, 1, 1, S]


class DitContextGraph(nn.Module):
    """(backbone_features, image_mask, attention_mask) → (cross_k, cross_v, text_bias, image_bias)."""

    def __init__(self, head: Gr00tActionHead, dtype: torch.dtype | None = None):
        super().__init__()
        config = head.config
        dtype = dtype or head.dtype
        self.heads, self.head_dim = config.dit.num_attention_heads, config.dit.attention_head_dim
        cross = cross_block_indices(config)
        blocks = [head.model.transformer_blocks[i] for i in cross]
        self.num_cross = len(blocks)
        self.cross_kinds = tuple(dit_block_kinds(config)[i] for i in cross)  # "text" / "image" per l
        self.vlln = Fp32LayerNorm(config.backbone_embedding_dim, eps=head.vlln.eps, device="meta")
        self.vlln.weight = nn.Parameter(head.vlln.weight.detach().to(dtype), requires_grad=False)
        self.vlln.bias = nn.Parameter(head.vlln.bias.detach().to(dtype), requires_grad=False)
        # all L cross blocks' projections as one Linear E -> L·C (rows of block l at l·C .. (l+1)·C−1)
        self.to_k = _stacked_linear([b.attn1.to_k for b in blocks], dtype)
        self.to_v = _stacked_linear([b.attn1.to_v for b in blocks], dtype)

    def _per_block_heads(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unflatten(-1, (self.num_cross, self.heads, self.head_dim))  # [B, S, L·C] -> [B, S, L, Hc, Dh]
        return x.permute(2, 0, 3, 1, 4)  # [B, S, L, Hc, Dh] -> [L, B, Hc, S, Dh]

    def forward(
        self, backbone_features: torch.Tensor, image_mask: torch.Tensor, attention_mask: torch.Tensor
    ):
        return self.cross_context(self.vlln(backbone_features), image_mask, attention_mask)

    def cross_context(self, vl: torch.Tensor, image_mask: torch.Tensor, attention_mask: torch.Tensor):
        """The DiT's context vl [B, S, E] → stacked cross K/V and the text/image biases."""
        text = ~image_mask & attention_mask  # [B, S]: text, prompt and image-tag tokens
        image = image_mask & attention_mask  # [B, S]
        cross_k = self._per_block_heads(self.to_k(vl))  # [L, B, Hc, S, Dh]
        cross_v = self._per_block_heads(self.to_v(vl))  # [L, B, Hc, S, Dh]
        keep = [text if kind == "text" else image for kind in self.cross_kinds]
        keep = torch.stack(keep)  # L × [B, S] -> [L, B, S]
        cross_v = cross_v * keep.to(vl.dtype)[:, :, None, :, None]  # zero V where block l may not attend
        return cross_k, cross_v, mask_bias(text, vl.dtype), mask_bias(image, vl.dtype)


def _stacked_linear(linears: list[nn.Linear], dtype: torch.dtype) -> nn.Linear:
    out_dim = sum(lin.out_features for lin in linears)
    stacked = nn.Linear(linears[0].in_features, out_dim, device="meta")
    weight = torch.cat([lin.weight.detach() for lin in linears], dim=0)  # L × [C, E] -> [L·C, E]
    bias = torch.cat([lin.bias.detach() for lin in linears], dim=0)  # L × [C] -> [L·C]
    stacked.weight = nn.Parameter(weight.to(dtype), requires_grad=False)
    stacked.bias = nn.Parameter(bias.to(dtype), requires_grad=False)
    return stacked
