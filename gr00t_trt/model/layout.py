"""Every tensor of the flow-matching action head, by arithmetic over the config (no module is built).

Both families' heads have the same modules (their configs share the field names), so each family's own
layout adds its backbone's tensors to this one. Each key's shape is a formula of the config values, so
checking an untrusted config.json costs the listing of the keys, never a model build.
"""

from __future__ import annotations

from typing import Any

Layout = dict[str, tuple[int, ...]]

DIT = "action_head.model."


def _linear(prefix: str, out: int, inp: int, bias: bool = True) -> Layout:
    return {f"{prefix}.weight": (out, inp), **({f"{prefix}.bias": (out,)} if bias else {})}


def _norm(prefix: str, dim: int, bias: bool = True) -> Layout:
    return {f"{prefix}.weight": (dim,), **({f"{prefix}.bias": (dim,)} if bias else {})}


def _category_linear(prefix: str, embodiments: int, inp: int, out: int) -> Layout:
    return {f"{prefix}.W": (embodiments, inp, out), f"{prefix}.b": (embodiments, out)}


def action_head_layout(config: Any) -> Layout:
    """Keys and shapes of the action head's state_dict (``action_head.*``)."""
    e, ds, da = config.max_num_embodiments, config.max_state_dim, config.max_action_dim
    hidden, c, o = config.hidden_size, config.input_embedding_dim, config.dit.output_dim
    out: Layout = {
        **_norm("action_head.vlln", config.backbone_embedding_dim),
        **_category_linear("action_head.state_encoder.layer1", e, ds, hidden),
        **_category_linear("action_head.state_encoder.layer2", e, hidden, c),
        **_category_linear("action_head.action_encoder.W1", e, da, c),
        **_category_linear("action_head.action_encoder.W2", e, 2 * c, c),
        **_category_linear("action_head.action_encoder.W3", e, c, c),
        **_category_linear("action_head.action_decoder.layer1", e, o, hidden),
        **_category_linear("action_head.action_decoder.layer2", e, hidden, da),
        "action_head.position_embedding.weight": (config.max_seq_len, c),
        **_linear(DIT + "timestep_encoder.timestep_embedder.linear_1", c, config.dit.timestep_proj_dim),
        **_linear(DIT + "timestep_encoder.timestep_embedder.linear_2", c, c),
    }
    inner = config.dit.inner_dim
    for n in range(config.dit.num_layers):
        block = f"{DIT}transformer_blocks.{n}."
        kv_in = c if n % 2 else config.backbone_embedding_dim  # odd blocks: self-attention; even: cross
        out.update(_linear(block + "norm1.linear", 2 * c, c))
        out.update(_linear(block + "attn1.to_q", inner, c))
        out.update(_linear(block + "attn1.to_k", inner, kv_in))
        out.update(_linear(block + "attn1.to_v", inner, kv_in))
        out.update(_linear(block + "attn1.to_out.0", c, inner))
        out.update(_linear(block + "ff.net.0.proj", 4 * c, c))
        out.update(_linear(block + "ff.net.2", c, 4 * c))
    out.update(_linear(DIT + "proj_out_1", 2 * c, c))
    out.update(_linear(DIT + "proj_out_2", o, c))
    return out
