"""Every tensor ``Gr00tN1d6(config)`` holds, by arithmetic over the config (no module is built).

``inspect`` and the strict layout check read untrusted config.json files; building even a meta-device
model costs time and memory proportional to the layer counts a crafted config claims. Here each key's
shape is a formula of the config values, so the cost is that of listing the keys. A test keeps this
table equal to the meta-device model's state_dict for the tiny, small and full presets.
"""

from __future__ import annotations

from .config import Gr00tConfig

Layout = dict[str, tuple[int, ...]]

VISION = "backbone.model.vision_model.vision_model."
LLM = "backbone.model.language_model.model."
DIT = "action_head.model."


def _linear(prefix: str, out: int, inp: int, bias: bool = True) -> Layout:
    return {f"{prefix}.weight": (out, inp), **({f"{prefix}.bias": (out,)} if bias else {})}


def _norm(prefix: str, dim: int, bias: bool = True) -> Layout:
    return {f"{prefix}.weight": (dim,), **({f"{prefix}.bias": (dim,)} if bias else {})}


def _category_linear(prefix: str, embodiments: int, inp: int, out: int) -> Layout:
    return {f"{prefix}.W": (embodiments, inp, out), f"{prefix}.b": (embodiments, out)}


def vision_layout(config: Gr00tConfig) -> Layout:
    v = config.backbone.vision
    d, i = v.hidden_size, v.intermediate_size
    out: Layout = {
        **_linear(VISION + "embeddings.patch_embedding", d, v.num_channels * v.patch_size**2),
        VISION + "embeddings.position_embedding.weight": (v.num_patches, d),
    }
    for n in range(v.num_hidden_layers):
        layer = f"{VISION}encoder.layers.{n}."
        out.update(_norm(layer + "layer_norm1", d))
        for proj in ("k_proj", "v_proj", "q_proj", "out_proj"):
            out.update(_linear(layer + f"self_attn.{proj}", d, d))
        out.update(_norm(layer + "layer_norm2", d))
        out.update(_linear(layer + "mlp.fc1", i, d))
        out.update(_linear(layer + "mlp.fc2", d, i))
    out.update(_norm(VISION + "post_layernorm", d))
    return out


def projector_layout(config: Gr00tConfig) -> Layout:
    b = config.backbone
    width, text = b.projector_in_dim, b.text.hidden_size
    return {
        **_norm("backbone.model.mlp1.0", width),
        **_linear("backbone.model.mlp1.1", text, width),
        **_linear("backbone.model.mlp1.3", text, text),
    }


def llm_layout(config: Gr00tConfig) -> Layout:
    """The kept Qwen3 layers (``select_layer`` of them) and the final norm."""
    t = config.backbone.text
    h, q, kv = t.hidden_size, t.num_attention_heads * t.head_dim, t.num_key_value_heads * t.head_dim
    out: Layout = {LLM + "embed_tokens.weight": (t.vocab_size, h)}
    for n in range(config.select_layer):
        layer = f"{LLM}layers.{n}."
        out.update(_linear(layer + "self_attn.q_proj", q, h, bias=False))
        out.update(_linear(layer + "self_attn.k_proj", kv, h, bias=False))
        out.update(_linear(layer + "self_attn.v_proj", kv, h, bias=False))
        out.update(_linear(layer + "self_attn.o_proj", h, q, bias=False))
        out.update(_norm(layer + "self_attn.q_norm", t.head_dim, bias=False))
        out.update(_norm(layer + "self_attn.k_norm", t.head_dim, bias=False))
        out.update(_linear(layer + "mlp.gate_proj", t.intermediate_size, h, bias=False))
        out.update(_linear(layer + "mlp.up_proj", t.intermediate_size, h, bias=False))
        out.update(_linear(layer + "mlp.down_proj", h, t.intermediate_size, bias=False))
        out.update(_norm(layer + "input_layernorm", h, bias=False))
        out.update(_norm(layer + "post_attention_layernorm", h, bias=False))
    out.update(_norm(LLM + "norm", h, bias=False))
    return out


def action_head_layout(config: Gr00tConfig) -> Layout:
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


def config_layout(config: Gr00tConfig) -> Layout:
    """Keys and shapes of ``Gr00tN1d6(config).state_dict()``, computed from the config alone."""
    return {**vision_layout(config), **projector_layout(config), **llm_layout(config), **action_head_layout(config)}

