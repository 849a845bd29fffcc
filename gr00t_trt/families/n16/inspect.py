"""``inspect``'s GR00T N1.6 rows: which component each checkpoint key belongs to, the parameters per
component and the engine weight estimate per graph group (headers only)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from ...model.checkpoint import StoredTensor
from ...model.inspect import ComponentCount, EngineEstimate
from .checkpoint import LM_HEAD_KEY, MASK_TOKEN_KEY, VISION_HEAD_PREFIX
from .config import Gr00tConfig
from .fp8_plan import is_planned

VISION = "backbone.model.vision_model.vision_model."
PROJECTOR = "backbone.model.mlp1."
LLM = "backbone.model.language_model.model."
ACTION_HEAD = "action_head."
DIT = "action_head.model."
POSITION_EMBEDDING_KEY = "action_head.position_embedding.weight"

#: (component, note) in display order; DiT sub-rows are listed in DIT_PARTS
COMPONENTS: tuple[tuple[str, str], ...] = (
    ("vision", "SigLIP2 tower: embeddings, encoder layers, post-LN"),
    ("vision pooling head", "unused by GR00T, not loaded"),
    ("projector", "mlp1: LayerNorm, Linear, GELU, Linear"),
    ("LLM embed", "Qwen3 embed_tokens"),
    ("LLM layers + norm", "kept Qwen3 layers and final RMSNorm"),
    ("lm_head", "unused by GR00T, not loaded"),
    ("VLLN", "LayerNorm on backbone features"),
    ("state encoder", "embodiment-specific MLP"),
    ("action encoder", "embodiment-specific W1/W2/W3"),
    ("DiT", "AlternateVLDiT"),
    ("action decoder", "embodiment-specific MLP"),
    ("position embedding", "learned action positions"),
    ("mask token", "training-only state-dropout token, not loaded"),
    ("other", "not part of GR00T N1.6"),
)
DIT_PARTS = ("timestep encoder", "cross-attn blocks", "self-attn blocks", "output layer")
UNUSED_COMPONENTS = ("vision pooling head", "lm_head", "mask token", "other")

#: engine groups of the estimate (graphs of architecture §4)
ENGINE_GROUPS = {
    "vision": ("vision", "projector"),
    "backbone": ("LLM embed", "LLM layers + norm"),
    "action head": ("VLLN", "state encoder", "action encoder", "DiT", "action decoder", "position embedding"),
}

# GEMM weights of the vision encoder layers and DiT blocks, all quantised by their graphs' fp8 plans
# (fp8_plan.FP8_PLAN); the LLM's are decided by the backbone's plan itself (``_fp8_weight``)
_FP8_GEMM = re.compile(
    r"^(?:"
    + re.escape(VISION) + r"encoder\.layers\.\d+\.(?:self_attn\.(?:q|k|v|out)_proj|mlp\.fc[12])"
    + r"|" + re.escape(DIT) + r"transformer_blocks\.\d+\.(?:attn1\.(?:to_q|to_k|to_v|to_out\.0)|ff\.net\.(?:0\.proj|2))"
    + r")\.weight$"
)  # fmt: skip


def _fp8_weight(key: str) -> bool:
    """True when an fp8 export stores this checkpoint tensor at one byte per parameter."""
    if key.startswith(LLM + "layers.") and key.endswith(".weight"):
        return is_planned("backbone", key[len(LLM):-len(".weight")])  # layers.3.mlp.up_proj
    return bool(_FP8_GEMM.match(key))
_BLOCK = re.compile(re.escape(DIT) + r"transformer_blocks\.(\d+)\.")


def classify(key: str, kinds: tuple[str, ...]) -> tuple[str, str | None]:
    """(component, DiT sub-row or None) of a checkpoint key; ``kinds`` are the DiT block roles."""
    if key.startswith(VISION_HEAD_PREFIX):
        return "vision pooling head", None
    if key == LM_HEAD_KEY:
        return "lm_head", None
    if key == MASK_TOKEN_KEY:
        return "mask token", None
    if key.startswith(VISION):
        return "vision", None
    if key.startswith(PROJECTOR):
        return "projector", None
    if key.startswith(LLM + "embed_tokens."):
        return "LLM embed", None
    if key.startswith((LLM + "layers.", LLM + "norm.")):
        return "LLM layers + norm", None
    if key.startswith(DIT):
        if key.startswith(DIT + "timestep_encoder."):
            return "DiT", "timestep encoder"
        block = _BLOCK.match(key)
        if block:
            i = int(block.group(1))
            kind = kinds[i] if i < len(kinds) else "self"
            return "DiT", "self-attn blocks" if kind == "self" else "cross-attn blocks"
        return "DiT", "output layer"
    for prefix, name in (
        ("action_head.vlln.", "VLLN"),
        ("action_head.state_encoder.", "state encoder"),
        ("action_head.action_encoder.", "action encoder"),
        ("action_head.action_decoder.", "action decoder"),
        ("action_head.position_embedding.", "position embedding"),
    ):
        if key.startswith(prefix):
            return name, None
    return "other", None


def count_components(index: Mapping[str, StoredTensor], config: Gr00tConfig) -> list[ComponentCount]:
    """Parameters per component in display order; unused and empty optional rows as described."""
    from ...model.action_head import dit_block_kinds

    kinds = dit_block_kinds(config)
    params: dict[tuple[str, str | None], int] = {}
    tensors: dict[tuple[str, str | None], int] = {}
    for key, info in index.items():
        name, part = classify(key, kinds)
        for slot in {(name, None), (name, part)}:
            params[slot] = params.get(slot, 0) + info.numel
            tensors[slot] = tensors.get(slot, 0) + 1
    rows = []
    for name, note in COMPONENTS:
        if name in ("mask token", "other") and (name, None) not in params:
            continue  # optional rows are shown only when such tensors exist
        unused = name in UNUSED_COMPONENTS
        rows.append(
            ComponentCount(
                name, params.get((name, None), 0), tensors.get((name, None), 0), note, None, unused
            )
        )
        if name == "DiT":
            for part in DIT_PARTS:
                rows.append(
                    ComponentCount(
                        part, params.get(("DiT", part), 0), tensors.get(("DiT", part), 0), "", "DiT"
                    )
                )
    return rows


def estimate_engines(index: Mapping[str, StoredTensor], config: Gr00tConfig) -> list[EngineEstimate]:
    """Weight bytes of the exported engines, by group and in total.

    Rule: every tensor an export puts into a graph counts, as stored in the checkpoint — i.e. all of
    them except lm_head, the SigLIP2 pooling head, mask_token and unknown keys, and of the action
    position embedding only the ``action_horizon`` rows that are used. fp16: 2 bytes per parameter.
    fp8: 1 byte per parameter of the GEMM weights of the vision encoder layers (q/k/v/out, fc1/fc2),
    the LLM layers the backbone's fp8 plan quantises (q/k/v, gate/up of layers ≥ 1: ``fp8_plan``) and
    the DiT blocks (to_q/k/v/out, feed-forward), 2 bytes for everything else. Export-time precomputation (per-step AdaLN / timestep tables, arch. §4)
    changes the action-head figure by a few percent and is not modelled; activations, workspace and
    TensorRT's own overhead are not included.
    """
    from ...model.action_head import dit_block_kinds

    kinds = dit_block_kinds(config)
    group_of = {component: group for group, members in ENGINE_GROUPS.items() for component in members}
    fp16: dict[str, int] = dict.fromkeys(ENGINE_GROUPS, 0)
    fp8: dict[str, int] = dict.fromkeys(ENGINE_GROUPS, 0)
    for key, info in index.items():
        group = group_of.get(classify(key, kinds)[0])
        if group is None:
            continue
        numel = info.numel
        if key == POSITION_EMBEDDING_KEY and len(info.shape) == 2:
            numel = min(info.shape[0], config.action_horizon) * info.shape[1]
        fp16[group] += 2 * numel
        fp8[group] += (1 if _fp8_weight(key) else 2) * numel
    estimates = [EngineEstimate(g, fp16[g], fp8[g]) for g in ENGINE_GROUPS]
    estimates.append(EngineEstimate("total", sum(fp16.values()), sum(fp8.values())))
    return estimates
