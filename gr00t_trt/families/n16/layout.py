"""Every tensor ``Gr00tN1d6(config)`` holds, by arithmetic over the config (no module is built).

``inspect`` and the strict layout check read untrusted config.json files; building even a meta-device
model costs time and memory proportional to the layer counts a crafted config claims. Here each key's
shape is a formula of the config values, so the cost is that of listing the keys. A test keeps this
table equal to the meta-device model's state_dict for the tiny, small and full presets.
"""

from __future__ import annotations

from ...model.layout import Layout, _linear, _norm, action_head_layout
from .config import Gr00tConfig

VISION = "backbone.model.vision_model.vision_model."
LLM = "backbone.model.language_model.model."


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


def config_layout(config: Gr00tConfig) -> Layout:
    """Keys and shapes of ``Gr00tN1d6(config).state_dict()``, computed from the config alone."""
    return {**vision_layout(config), **projector_layout(config), **llm_layout(config), **action_head_layout(config)}

