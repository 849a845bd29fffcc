"""Every tensor a GR00T N1.7 checkpoint holds, by arithmetic over the config (spec §2), and the strict
accounting of a checkpoint's tensors against it.

As for N1.6 (``gr00t_trt.families.n16.layout``, on the shared ``gr00t_trt.model.layout``), shapes are formulas of the config so that ``inspect`` on an
untrusted config.json never builds a model; a test keeps the table equal to the reference model's
state_dict. The action head has N1.6's key names at N1.7's widths, so its table is N1.6's function
(duck-typed on the config) plus the new VL self-attention blocks. The released checkpoint also stores
``backbone.model.lm_head.weight``, which nothing reads: it is listed (it counts in the byte total) and
reported as skipped, never loaded. LLM layers beyond ``select_layer`` are absent from the files.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from ...base.errors import CheckpointError
from ...model.checkpoint import DTYPE_BYTES, WEIGHT_DTYPES, LayoutCheck, StoredTensor
from ...model.layout import _linear, _norm, action_head_layout
from .config import MODEL, N17Config

Shapes = dict[str, tuple[int, ...]]
#: {key: (shape, safetensors dtype tag of the release)}
Layout = dict[str, tuple[tuple[int, ...], str]]

VISION = "backbone.model.model.visual."
LLM = "backbone.model.model.language_model."
LM_HEAD_KEY = "backbone.model.lm_head.weight"
VL_SELF_ATTENTION = "action_head.vl_self_attention."
#: the released base checkpoint stores every tensor in bf16 (spec §2.3); fine-tunes may use F32 per tensor
RELEASE_DTYPE = "BF16"


def _merger(prefix: str, norm_dim: int, merged: int, out: int) -> Shapes:
    return {**_norm(prefix + "norm", norm_dim), **_linear(prefix + "linear_fc1", merged, merged),
            **_linear(prefix + "linear_fc2", out, merged)}  # fmt: skip


def vision_shapes(config: N17Config) -> Shapes:
    """Qwen3-VL vision tower: Conv3d patch embed, learned table, blocks, merger, DeepStack mergers."""
    v = config.backbone.vision
    d, i = v.hidden_size, v.intermediate_size
    out: Shapes = {
        VISION + "patch_embed.proj.weight": (d, v.in_channels, v.temporal_patch_size, v.patch_size, v.patch_size),
        VISION + "patch_embed.proj.bias": (d,),
        VISION + "pos_embed.weight": (v.num_position_embeddings, d),
    }
    for n in range(v.depth):
        block = f"{VISION}blocks.{n}."
        out.update(_norm(block + "norm1", d))
        out.update(_norm(block + "norm2", d))
        out.update(_linear(block + "attn.qkv", 3 * d, d))
        out.update(_linear(block + "attn.proj", d, d))
        out.update(_linear(block + "mlp.linear_fc1", i, d))
        out.update(_linear(block + "mlp.linear_fc2", d, i))
    out.update(_merger(VISION + "merger.", d, v.merged_dim, v.out_hidden_size))  # LN before the 2×2 grouping
    for k in range(len(v.deepstack_visual_indexes)):  # LN after the grouping
        out.update(_merger(f"{VISION}deepstack_merger_list.{k}.", v.merged_dim, v.merged_dim, v.out_hidden_size))
    return out


def llm_shapes(config: N17Config) -> Shapes:
    """The kept Qwen3-VL text layers (``select_layer``), the embedding and the (unapplied) final norm."""
    t = config.backbone.text
    h, q, kv = t.hidden_size, t.num_attention_heads * t.head_dim, t.num_key_value_heads * t.head_dim
    out: Shapes = {LLM + "embed_tokens.weight": (t.vocab_size, h)}
    for n in range(config.select_layer):
        layer = f"{LLM}layers.{n}."
        for name, rows, cols in (("self_attn.q_proj", q, h), ("self_attn.k_proj", kv, h), ("self_attn.v_proj", kv, h),
                                 ("self_attn.o_proj", h, q), ("mlp.gate_proj", t.intermediate_size, h),
                                 ("mlp.up_proj", t.intermediate_size, h), ("mlp.down_proj", h, t.intermediate_size)):
            out.update(_linear(layer + name, rows, cols, bias=False))
        out.update(_norm(layer + "self_attn.q_norm", t.head_dim, bias=False))
        out.update(_norm(layer + "self_attn.k_norm", t.head_dim, bias=False))
        out.update(_norm(layer + "input_layernorm", h, bias=False))
        out.update(_norm(layer + "post_attention_layernorm", h, bias=False))
    out.update(_norm(LLM + "norm", h, bias=False))
    return out


def vl_self_attention_shapes(config: N17Config) -> Shapes:
    """The 4 ``SelfAttentionTransformer`` blocks between VLLN and the DiT (affine LayerNorms, biases)."""
    vlsa, d = config.vl_self_attention, config.backbone_embedding_dim
    out: Shapes = {}
    for n in range(vlsa.num_layers if vlsa is not None else 0):
        block = f"{VL_SELF_ATTENTION}transformer_blocks.{n}."
        out.update(_norm(block + "norm1", d))
        for proj in ("to_q", "to_k", "to_v"):
            out.update(_linear(block + f"attn1.{proj}", vlsa.inner_dim, d))
        out.update(_linear(block + "attn1.to_out.0", d, vlsa.inner_dim))
        out.update(_norm(block + "norm3", d))
        out.update(_linear(block + "ff.net.0.proj", 4 * d, d))
        out.update(_linear(block + "ff.net.2", d, 4 * d))
    return out


def model_shapes(config: N17Config) -> Shapes:
    """Keys and shapes the reference model loads (everything but ``lm_head``)."""
    return {**vision_shapes(config), **llm_shapes(config), **action_head_layout(config),
            **vl_self_attention_shapes(config)}  # fmt: skip


def unused_shapes(config: N17Config) -> Shapes:
    """Stored by checkpoints, read by nothing: ``lm_head`` (spec §2.2; no ``mask_token`` in N1.7)."""
    t = config.backbone.text
    return {LM_HEAD_KEY: (t.vocab_size, t.hidden_size)}


def config_layout(config: N17Config, dtype: str = RELEASE_DTYPE) -> Layout:
    """Every tensor a checkpoint of this config holds → (shape, storage dtype of the release)."""
    return {k: (s, dtype) for k, s in {**model_shapes(config), **unused_shapes(config)}.items()}


# ---------------------------------------------------------------------- parameter counts
#: component → key prefixes, in spec §2.4's order
COMPONENTS: dict[str, tuple[str, ...]] = {
    "vision": (VISION,),
    "llm": (LLM,),
    "lm_head": (LM_HEAD_KEY,),
    "vlln": ("action_head.vlln.",),
    "vl_self_attention": (VL_SELF_ATTENTION,),
    "state_encoder": ("action_head.state_encoder.",),
    "action_encoder": ("action_head.action_encoder.",),
    "action_decoder": ("action_head.action_decoder.",),
    "position_embedding": ("action_head.position_embedding.",),
    "dit": ("action_head.model.",),
}


def component_of(key: str) -> str:
    """The §2.4 component a key belongs to (CheckpointError for a key of none)."""
    for name, prefixes in COMPONENTS.items():
        if key.startswith(prefixes):
            return name
    raise CheckpointError(f"tensor {key!r} belongs to no GR00T N1.7 component — expected a prefix of {COMPONENTS}")


def parameter_counts(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, int]:
    """Parameters per component of a {key: shape} table (components with no tensor count 0)."""
    counts = dict.fromkeys(COMPONENTS, 0)
    for key, shape in shapes.items():
        counts[component_of(key)] += math.prod(shape)
    return counts


def total_bytes(layout: Layout) -> int:
    """Bytes of the weights (the index's ``total_size``)."""
    return sum(math.prod(shape) * DTYPE_BYTES[dtype] for shape, dtype in layout.values())


# ---------------------------------------------------------------------- accounting
def compare_layout(found: Mapping[str, StoredTensor | tuple[int, ...]], config: N17Config) -> LayoutCheck:
    """Account for every tensor: missing, unexpected, wrong shape, non-float dtype, or unused (skipped)."""
    wanted, unused = model_shapes(config), unused_shapes(config)
    check = LayoutCheck()
    for key, value in found.items():
        shape = tuple(value.shape if isinstance(value, StoredTensor) else value)
        if isinstance(value, StoredTensor) and value.dtype not in WEIGHT_DTYPES:
            check.wrong_dtype.append((key, value.dtype))
        expected = wanted.get(key, unused.get(key))
        if expected is None:
            check.unexpected.append(key)
        elif shape != expected:
            check.misshaped.append((key, expected, shape))
        elif key in unused:
            check.skipped.append(key)
    check.missing = [k for k in wanted if k not in found]
    return check


def check_layout(found: Mapping[str, StoredTensor | tuple[int, ...]], config: N17Config,
                 source: str = "checkpoint") -> list[str]:
    """One-line CheckpointError unless the tensors match the config's model exactly; returns the
    stored-but-unused keys (skipped when loading)."""
    check = compare_layout(found, config)
    if not check.ok:
        raise CheckpointError(f"{source} does not match the {MODEL} model its config.json describes — "
                              f"{check.problems()} — is config.json from the same checkpoint?")
    return check.skipped


# ---------------------------------------------------------------------- inspect
#: what each component is, for ``inspect``'s table
COMPONENT_NOTES = {
    "vision": "Qwen3-VL tower: patch embed, position table, blocks, merger, DeepStack mergers",
    "llm": "Qwen3-VL text: embed_tokens and the kept layers (read before the final norm)",
    "lm_head": "unused by GR00T, not loaded",
    "vlln": "LayerNorm on backbone features",
    "vl_self_attention": "the 4-block self-attention between VLLN and the DiT",
    "state_encoder": "embodiment-specific MLP",
    "action_encoder": "embodiment-specific W1/W2/W3",
    "action_decoder": "embodiment-specific MLP",
    "position_embedding": "learned action positions",
    "dit": "AlternateVLDiT (as N1.6)",
}


def count_components(index: Mapping[str, StoredTensor], config: N17Config) -> list:
    """``inspect``'s component rows (spec §2.4's order) of a stored checkpoint; keys of no component
    are counted under "other" (the layout check names them)."""
    from ...model.inspect import ComponentCount

    params = dict.fromkeys((*COMPONENTS, "other"), 0)
    tensors = dict.fromkeys(params, 0)
    for key, info in index.items():
        try:
            name = component_of(key)
        except CheckpointError:
            name = "other"
        params[name] += info.numel
        tensors[name] += 1
    return [ComponentCount(name, params[name], tensors[name], COMPONENT_NOTES.get(name, "not part of GR00T N1.7"),
                           unused=name in ("lm_head", "other"))
            for name in params if name != "other" or tensors[name]]
