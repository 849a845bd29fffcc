"""``dit`` graph: the 32 DiT blocks of one denoising step, with all timestep conditioning precomputed.

In the original every step runs the timestep MLP (sinusoid → linear_1 → SiLU → linear_2), 32 AdaLN
modulation linears (C → 2C each) and the output layer's proj_out_1 — all functions of the step index
alone. This wrapper evaluates them once, in float64 from the fp32 weights (the sinusoid in fp32 as the
original), for every step k < N, and stores the results as tables indexed by ``step``:

- ``norm1_modulation`` [N, layers, 2, C]: per block (scale, shift) — the AdaLayerNorm order;
- ``output_modulation`` [N, 2, C]: (shift, scale) — the output layer's (opposite) order.

Cross-attention blocks take the K/V that ``dit_context`` computed once per control step; only to_q,
to_out, the feed-forward and the self-attention blocks' projections remain in this graph. Only the H
action positions go through the output layer (it and the decoder are token-wise). LayerNorms are
evaluated in fp32 in half-precision exports (Cast nodes around them; none in an fp32 graph).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..model.action_head import (
    BasicTransformerBlock,
    Fp32LayerNorm,
    Gr00tActionHead,
    cross_block_indices,
    detached_linear,
    dit_block_kinds,
    dit_time_sinusoid,
    modulate,
)
from .attention import Attention


class DitBlockGraph(nn.Module):
    """One transformer block whose AdaLN (scale, shift) is given; a cross block also takes K/V and the
    additive mask bias instead of projecting the backbone features itself."""

    def __init__(self, block: BasicTransformerBlock, cross: bool, dtype: torch.dtype):
        super().__init__()
        attn = block.attn1
        self.cross = cross
        self.heads, self.head_dim = attn.heads, attn.head_dim
        dim = attn.to_q.in_features
        self.norm1 = Fp32LayerNorm(dim, eps=block.norm1.norm.eps, elementwise_affine=False)
        self.to_q = detached_linear(attn.to_q, dtype)
        if not cross:
            self.to_k = detached_linear(attn.to_k, dtype)
            self.to_v = detached_linear(attn.to_v, dtype)
        self.attention = Attention()
        self.to_out = detached_linear(attn.to_out[0], dtype)
        self.norm3 = Fp32LayerNorm(dim, eps=block.norm3.eps, elementwise_affine=False)
        self.ff_proj = detached_linear(block.ff.net[0].proj, dtype)
        self.ff_out = detached_linear(block.ff.net[2], dtype)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)  # [B, T, C] -> [B, Hc, T, Dh]

    def forward(self, x, scale, shift, key=None, value=None, bias=None):
        """x [B, T, C], scale/shift [B, C]; cross: key/value [B, Hc, S, Dh], bias [B, 1, 1, S]."""
        h = modulate(self.norm1(x), scale, shift)  # [B, T, C]
        q = self._split_heads(self.to_q(h))  # [B, Hc, T, Dh]
        if not self.cross:
            key = self._split_heads(self.to_k(h))  # [B, Hc, T, Dh]
            value = self._split_heads(self.to_v(h))  # [B, Hc, T, Dh]
        out = self.attention(q, key, value, bias)  # [B, Hc, T, Dh]
        x = x + self.to_out(out.transpose(1, 2).flatten(2))  # [B, Hc, T, Dh] -> [B, T, C]
        return x + self.ff_out(F.gelu(self.ff_proj(self.norm3(x)), approximate="tanh"))


class DitGraph(nn.Module):
    """(state_features, action_features, cross_k, cross_v, text_bias, image_bias, step) → (dit_out,)."""

    def __init__(self, head: Gr00tActionHead, dtype: torch.dtype | None = None):
        super().__init__()
        config = head.config
        dtype = dtype or head.dtype
        dit = head.model
        self.kinds = dit_block_kinds(config)
        # block index i -> its position n along the L axis of cross_k / cross_v
        self.cross_index = {i: n for n, i in enumerate(cross_block_indices(config))}
        self.horizon = config.action_horizon
        norm1_table, output_table = modulation_tables(head)
        self.register_buffer("norm1_modulation", norm1_table.to(dtype))  # [N, layers, 2, C]: (scale, shift)
        self.register_buffer("output_modulation", output_table.to(dtype))  # [N, 2, C]: (shift, scale)
        self.transformer_blocks = nn.ModuleList(
            DitBlockGraph(block, kind != "self", dtype)
            for kind, block in zip(self.kinds, dit.transformer_blocks, strict=True)
        )
        self.norm_out = Fp32LayerNorm(
            config.input_embedding_dim, eps=dit.norm_out.eps, elementwise_affine=False
        )
        self.proj_out_2 = detached_linear(dit.proj_out_2, dtype)

    def forward(self, state_features, action_features, cross_k, cross_v, text_bias, image_bias, step):
        x = torch.cat([state_features, action_features], dim=1)  # [B, 1, C] ‖ [B, H, C] -> [B, 1+H, C]
        norm1 = self.norm1_modulation.index_select(0, step)  # [B, layers, 2, C]
        for i, (kind, block) in enumerate(zip(self.kinds, self.transformer_blocks, strict=True)):
            scale, shift = norm1[:, i, 0], norm1[:, i, 1]  # [B, C] each
            if kind == "self":
                x = block(x, scale, shift)
            else:
                n = self.cross_index[i]
                bias = text_bias if kind == "text" else image_bias
                x = block(x, scale, shift, cross_k[n], cross_v[n], bias)  # [B, Hc, S, Dh] each
        x = x[:, -self.horizon :]  # [B, 1+H, C] -> [B, H, C]: the action positions
        output = self.output_modulation.index_select(0, step)  # [B, 2, C]
        shift, scale = output[:, 0], output[:, 1]  # [B, C] each
        return (self.proj_out_2(modulate(self.norm_out(x), scale, shift)),)  # [B, H, O]


@torch.no_grad()
def modulation_tables(head: Gr00tActionHead) -> tuple[torch.Tensor, torch.Tensor]:
    """Every step's AdaLN (scale, shift) per block [N, layers, 2, C] and output (shift, scale) [N, 2, C],
    float64: temb_k = linear_2(SiLU(linear_1(sincos(τ_k)))), then each modulation linear on SiLU(temb_k)."""
    config, dit = head.config, head.model
    steps = config.num_inference_timesteps
    timesteps = torch.cat([head.timestep(k, 1) for k in range(steps)])  # [N] int64: τ_0..τ_{N−1}
    code = dit_time_sinusoid(timesteps, config.dit.timestep_proj_dim).double()  # [N, 256]
    embedder = dit.timestep_encoder.timestep_embedder
    temb = _linear64(embedder.linear_2, F.silu(_linear64(embedder.linear_1, code)))  # [N, C]
    act = F.silu(temb)
    norm1 = [_linear64(block.norm1.linear, act).unflatten(-1, (2, -1)) for block in dit.transformer_blocks]
    norm1 = torch.stack(norm1, dim=1)  # layers × [N, 2, C] -> [N, layers, 2, C]
    output = _linear64(dit.proj_out_1, act).unflatten(-1, (2, -1))  # [N, 2C] -> [N, 2, C]
    return norm1, output


def _linear64(linear: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x, linear.weight.detach().double(), linear.bias.detach().double())
