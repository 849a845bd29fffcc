"""N1.7's roofline (``bench.roofline``): weights read and FLOPs of its graphs per control step, ours and the
reference's, from ``N17Config`` alone, and the per-component parameter counts of spec §2.4 that
``check_stored_params`` proves against a checkpoint's headers.

What differs from N1.6 (``families/n16/roofline.py``, whose LLM, VLLN + cross K/V, state encoder and
denoising step counts apply unchanged at N1.7's widths):
- vision: patch 16, one token per 2×2 patches; ours embeds a frame with the two temporal halves of the
  Conv3d kernel summed (the frame is seen twice), the reference with the whole kernel; the position
  table arrives resized per size (ours) or is read whole and interpolated (reference); the merger and
  the DeepStack mergers on the merged tokens;
- backbone: read before the final norm, with N1.7's own fp8 plan;
- dit_context: VLLN + the VL self-attention blocks (once per control step on both sides) + ours'
  stacked cross K/V.
Stdlib only.
"""

from __future__ import annotations

from collections.abc import Iterable

from ...bench.roofline import Ledger, WorkItem, Workload, workload
from ..n16.roofline import (
    action_head_params,
    denoise_step,
    llm,
    llm_layer_params,
    side_of,
    state_encoder,
    vlln_and_cross_kv,
)
from .config import N17Config
from .fp8_plan import FP8_KEEP, FP8_PLAN

#: the Qwen3-VL chat template around a prompt (spec §4.3: ``<|im_start|>user\n`` … ``<|im_end|>\n``), a
#: short instruction, and the ``<|vision_start|>``/``<|vision_end|>`` pair around each image's tokens
TEMPLATE_TOKENS, INSTRUCTION_TOKENS, TAGS_PER_IMAGE = 5, 10, 2


def config_from_manifest(model: dict, source: str) -> N17Config:
    """The config an export's manifest records."""
    return N17Config.from_dict(model, source)


def image_tokens(config: N17Config, height: int, width: int) -> int:
    """LLM tokens of one preprocessed image (a multiple of 32 pixels a side: one token per 32×32)."""
    v = config.backbone.vision
    side = v.patch_size * v.spatial_merge_size
    return (height // side) * (width // side)


def default_workload(config: N17Config, image_sizes: Iterable[tuple[int, int]] = ((256, 256),), *,
                     cameras: int = 1, batch: int = 1, steps: int | None = None, bucket: int = 32) -> Workload:
    """A typical prompt: ``cameras`` images first, then a short instruction, in the chat template."""
    return workload(image_sizes, lambda h, w: image_tokens(config, h, w) + TAGS_PER_IMAGE,
                    TEMPLATE_TOKENS + INSTRUCTION_TOKENS, cameras=cameras, batch=batch, bucket=bucket,
                    steps=steps if steps is not None else config.num_inference_timesteps)


def _merger(led: Ledger, stage: str, what: str, norm: int, merged: int, out: int, rows: int) -> None:
    """A patch merger: LayerNorm (before or after the 2×2 grouping), fc1, GELU, fc2."""
    led.linears("vision", "vision", f"{stage}: {what}", [(merged, merged, rows, True), (merged, out, rows, True)],
                extra_other=2 * norm)


def _vision(led: Ledger, c: N17Config, w: Workload, *, ours: bool) -> None:
    v = c.backbone.vision
    d, i, layers, merge = v.hidden_size, v.intermediate_size, v.depth, v.spatial_merge_size**2
    for h, wd, count in w.images:
        n = count * w.batch
        t = image_tokens(c, h, wd)
        p, stage = t * merge, f"vision_{h}x{wd}"
        rows = n * p
        patch_in = v.in_channels * v.patch_size**2 * (1 if ours else v.temporal_patch_size)
        led.linears("vision", "vision", f"{stage}: patch embedding ({n} × {p} patches)", [(patch_in, d, rows, True)],
                    extra_other=(p if ours else v.num_position_embeddings) * d)  # ours: the table resized per size
        led.linears("vision", "vision", f"{stage}: {layers} blocks",
                    [(d, 3 * d, rows, True), (d, d, rows, True), (d, i, rows, True), (i, d, rows, True)] * layers,
                    extra_other=layers * 4 * d)  # two LayerNorms per block
        led.add("vision", "vision", f"{stage}: attention QKᵀ and PV (per image)", flops=layers * 2 * 2 * n * p * p * d)
        _merger(led, stage, f"merger ({n} × {t} tokens)", d, v.merged_dim, v.out_hidden_size, n * t)
        for k in range(len(v.deepstack_visual_indexes)):
            _merger(led, stage, f"DeepStack merger {k}", v.merged_dim, v.merged_dim, v.out_hidden_size, n * t)


def _vl_self_attention(led: Ledger, c: N17Config, w: Workload, seq: int) -> None:
    """The VL self-attention blocks between VLLN and the DiT: once per control step on both sides."""
    vlsa, e = c.vl_self_attention, c.backbone_embedding_dim
    if vlsa is None:
        return
    rows, inner = w.batch * seq, vlsa.inner_dim
    block = [(e, inner, rows, True)] * 3 + [(inner, e, rows, True), (e, 4 * e, rows, True), (4 * e, e, rows, True)]
    led.linears("dit_context", "dit_context", f"VL self-attention: {vlsa.num_layers} blocks on S = {seq}",
                block * vlsa.num_layers, extra_other=vlsa.num_layers * 4 * e)  # norm1, norm3
    led.add("dit_context", "dit_context", "VL self-attention QKᵀ and PV",
            flops=vlsa.num_layers * 2 * 2 * w.batch * seq * seq * inner)


def count_work(config: N17Config, workload: Workload, side: str) -> list[WorkItem]:
    """Every weight read and FLOP of one N1.7 control step on ``side`` ("ours" | "reference")."""
    led, ours, seq = side_of(workload, side)
    _vision(led, config, workload, ours=ours)
    llm(led, config, workload, seq, (FP8_PLAN, FP8_KEEP), final_norm=False)
    vlln_and_cross_kv(led, config, workload, seq, ours=ours)
    _vl_self_attention(led, config, workload, seq)
    state_encoder(led, config, workload)
    denoise_step(led, config, workload, seq, ours=ours)
    return led.items


def stored_params(config: N17Config) -> dict[str, int]:
    """Parameters per ``inspect`` component (spec §2.4's names) a checkpoint of ``config`` holds, by the
    same shape rules as ``count_work``."""
    c, v, t = config, config.backbone.vision, config.backbone.text
    d, i, merged, out = v.hidden_size, v.intermediate_size, v.merged_dim, v.out_hidden_size
    mergers = (2 * d + 2 * merged * len(v.deepstack_visual_indexes)
               + (1 + len(v.deepstack_visual_indexes)) * (merged * merged + merged + merged * out + out))
    vision = (v.patch_dim + 1) * d + v.num_position_embeddings * d + mergers
    vision += v.depth * (4 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * i + i) + (i * d + d))
    e = c.backbone_embedding_dim
    vlsa = 0
    if c.vl_self_attention is not None:
        inner = c.vl_self_attention.inner_dim
        vlsa = c.vl_self_attention.num_layers * (4 * e + 3 * (e * inner + inner) + inner * e + e + 8 * e * e + 5 * e)
    head = action_head_params(c)
    return {
        "vision": vision,
        "llm": t.vocab_size * t.hidden_size + c.select_layer * llm_layer_params(c) + t.hidden_size,
        "lm_head": t.vocab_size * t.hidden_size,
        "vlln": 2 * e,
        "vl_self_attention": vlsa,
        "state_encoder": head["state encoder"],
        "action_encoder": head["action encoder"],
        "action_decoder": head["action decoder"],
        "position_embedding": c.max_seq_len * c.input_embedding_dim,
        "dit": head["DiT"],
    }
