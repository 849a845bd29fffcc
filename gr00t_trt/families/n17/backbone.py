"""The N1.7 LLM graph: 16 Qwen3-VL text layers read before the final norm (spec §3.6).

Modules are transformers' ``Qwen3VLTextModel`` (the checkpoint's key names); the forward is written
here so that it exports and so that the details GR00T depends on are explicit:
- image embeddings replace the ``<|image_pad|>`` rows, row-major over (batch, position);
- DeepStack feature k is added at those rows after decoder layer k (k < 3);
- interleaved M-RoPE from host-computed position ids [3, B, S] (frequency j reads the h row when
  j ≡ 1 mod 3, the w row when j ≡ 2 mod 3, below 3·section; the t row otherwise), with the original's
  rounding in a bf16 model: inv_freq rounded to the model dtype, angles in fp32, cos/sin in the dtype;
- a hand-built causal + key-padding mask (no complex numbers, no mask helpers);
- padding queries get a zero attention output, as flash-attention 2's unpadded path (which the
  original runs when flash-attn is installed) gives them; their rows still pass through the MLPs and
  so do not depend on their position ids. The VL self-attention later attends to these rows, so this
  is part of the original's result for left-padded batches (its SDPA fallback was not checked, §9.8);
- the result is the last kept layer's output, **before** ``norm``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...base.errors import ObservationError
from .config import N17Config
from .vision import rotate_half


def mrope_inv_freq(head_dim: int, theta: float, dtype: torch.dtype) -> torch.Tensor:
    """inv_freq_j = θ^(−2j/head_dim), rounded to ``dtype`` (the original casts the buffer with the
    model) and returned in fp32 → [head_dim/2]."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    return inv_freq.to(dtype).float()


def mrope_axis(section: tuple[int, ...], half: int) -> torch.Tensor:
    """Which position row (0 = t, 1 = h, 2 = w) each of the ``half`` frequencies reads (interleaved)."""
    axis = torch.zeros(half, dtype=torch.long)
    for row in (1, 2):
        axis[row : 3 * section[row] : 3] = row
    return axis


def mrope_tables(position_ids: torch.Tensor, head_dim: int, theta: float, section: tuple[int, ...],
                 dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Position ids int64 [3, B, S] → cos, sin [B, S, head_dim] in ``dtype``."""
    inv_freq = mrope_inv_freq(head_dim, theta, dtype).to(position_ids.device)  # [half]
    axis = mrope_axis(section, head_dim // 2).to(position_ids.device)  # [half]
    pos = position_ids.float().permute(1, 2, 0)  # [B, S, 3]
    angles = pos.index_select(-1, axis) * inv_freq  # [B, S, half]: each frequency with its own row (a Gather)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def causal_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Additive bias [B, 1, S, S]: key k is visible from query q when k ≤ q and k is a real token; every
    query also sees itself (a padding query then has a finite row, zeroed after attention)."""
    seq = attention_mask.shape[-1]
    pos = torch.arange(seq, device=attention_mask.device)
    allowed = ((pos[None, :] <= pos[:, None])[None] & attention_mask[:, None, :]) | (pos[None, :] == pos[:, None])[None]
    blocked = torch.full((), torch.finfo(dtype).min / 2, dtype=dtype, device=attention_mask.device)
    return torch.where(allowed, torch.zeros((), dtype=dtype, device=attention_mask.device), blocked)[:, None]


class BackboneGraph(nn.Module):
    """The LLM graph over the modules of a ``Qwen3VLTextModel`` truncated to ``select_layer`` layers."""

    def __init__(self, language_model: nn.Module, config: N17Config):
        super().__init__()
        self.llm = language_model
        self.config = config

    @property
    def dtype(self) -> torch.dtype:
        return self.llm.embed_tokens.weight.dtype

    def embed(self, input_ids: torch.Tensor, image_embeds: torch.Tensor) -> torch.Tensor:
        """Token embeddings with the image rows placed → [B, S, E]."""
        embeds = self.llm.embed_tokens(input_ids)
        is_image = input_ids == self.config.backbone.image_token_id
        if image_embeds.shape != (int(is_image.sum()), embeds.shape[-1]):
            raise ObservationError(f"image_embeds has shape {list(image_embeds.shape)} — expected "
                                   f"[{int(is_image.sum())}, {embeds.shape[-1]}] (one row per image token in input_ids)")
        embeds = embeds.clone()
        embeds[is_image] = image_embeds.to(embeds.dtype)
        return embeds

    def layer(self, layer: nn.Module, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, bias: torch.Tensor,
              real: torch.Tensor) -> torch.Tensor:
        """One decoder layer: RMSNorm → GQA attention (q/k RMSNorm, M-RoPE) → residual → SiLU-gated MLP."""
        attn, t = layer.self_attn, self.config.backbone.text
        b, s, _ = x.shape
        h = layer.input_layernorm(x)
        q = attn.q_norm(attn.q_proj(h).view(b, s, -1, t.head_dim)).transpose(1, 2)  # [B, Hq, S, Dh]
        k = attn.k_norm(attn.k_proj(h).view(b, s, -1, t.head_dim)).transpose(1, 2)  # [B, Hkv, S, Dh]
        v = attn.v_proj(h).view(b, s, -1, t.head_dim).transpose(1, 2)
        cos, sin = cos[:, None], sin[:, None]
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        groups = t.num_attention_heads // t.num_key_value_heads
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # scale Dh^-½
        out = out.transpose(1, 2).reshape(b, s, -1) * real[..., None].to(out.dtype)  # padding queries: 0
        x = x + attn.o_proj(out)
        return x + layer.mlp(layer.post_attention_layernorm(x))

    def forward(self, input_ids: torch.Tensor, image_embeds: torch.Tensor, deepstack: torch.Tensor,
                position_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """input_ids int64 [B, S], image_embeds [T, E], deepstack [k, T, E], position_ids int64 [3, B, S],
        attention_mask bool [B, S] (True = real token) → pre-norm features [B, S, E]."""
        self._check(input_ids, deepstack, position_ids, attention_mask)
        is_image = input_ids == self.config.backbone.image_token_id

        def add_deepstack(x: torch.Tensor, index: int) -> torch.Tensor:
            x = x.clone()
            x[is_image] = x[is_image] + deepstack[index].to(x.dtype)
            return x

        x = self.embed(input_ids, image_embeds)
        return self.decode(x, position_ids, attention_mask, add_deepstack, deepstack.shape[0])

    def decode(self, x: torch.Tensor, position_ids: torch.Tensor, attention_mask: torch.Tensor,
               add_deepstack, count: int, rope_dtype: torch.dtype | None = None) -> torch.Tensor:
        """Embedded tokens [B, S, E] → the decoder layers, ``add_deepstack(x, k)`` after layer k < count
        → pre-norm features. M-RoPE is rounded as a ``rope_dtype`` model does (default: x's dtype)."""
        t = self.config.backbone.text
        cos, sin = mrope_tables(position_ids, t.head_dim, t.rope_theta, t.mrope_section, rope_dtype or x.dtype)
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)
        bias = causal_mask(attention_mask, x.dtype)
        for index, layer in enumerate(self.llm.layers):
            x = self.layer(layer, x, cos, sin, bias, attention_mask)
            if index < count:
                x = add_deepstack(x, index)
        return x  # no final norm (spec §3.6 step 6)

    def _check(self, input_ids, deepstack, position_ids, attention_mask) -> None:
        b, s = input_ids.shape
        if input_ids.dtype != torch.int64:
            raise ObservationError(f"input_ids has dtype {input_ids.dtype} — expected torch.int64 [B, S]")
        if attention_mask.shape != (b, s) or attention_mask.dtype != torch.bool:
            raise ObservationError(f"attention_mask is {attention_mask.dtype} {list(attention_mask.shape)} — expected bool [{b}, {s}]")
        if position_ids.shape != (3, b, s):
            raise ObservationError(f"position_ids has shape {list(position_ids.shape)} — expected [3, {b}, {s}] (M-RoPE t/h/w)")
        k = len(self.config.backbone.vision.deepstack_visual_indexes)
        if deepstack.ndim != 3 or deepstack.shape[0] != k:
            raise ObservationError(f"deepstack has shape {list(deepstack.shape)} — expected [{k}, T, E]")
        vocab = self.config.backbone.text.vocab_size
        if input_ids.numel() and not (0 <= int(input_ids.min()) and int(input_ids.max()) < vocab):
            raise ObservationError(f"input_ids hold ids outside [0, {vocab})")
