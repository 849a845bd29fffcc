"""N1.6's roofline (``bench.roofline``): the weights each of its graphs reads and the FLOPs it computes per
control step, ours and the reference's, from the config alone — every shape of N1.6 follows from it —
and the per-component parameter counts ``check_stored_params`` proves against a checkpoint's headers.

Ours is what the exported graphs compute (architecture §4): K/V of the cross blocks once per control
step in ``dit_context``, the AdaLN/output modulation and the action encoder's timestep half as per-step
table rows, only the H action positions through the output layer and decoder, embodiment-specific
weights read one slice at a time. The reference is ``Gr00tN1d6.reference_get_action`` as the original
computes it. Both are counted at the same precision per graph, so their ratio is the algorithm's alone.
Stdlib only (the config module is stdlib only too).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ...base.errors import Gr00tTrtError
from ...bench.roofline import SIDES, Ledger, WorkItem, Workload, workload
from .config import Gr00tConfig
from .fp8_plan import FP8_KEEP, FP8_PLAN, is_planned

#: prompt tokens around the images: system prompt / chat template before them, instruction after,
#: and the tag tokens wrapping each image (`<image k>`, `<img>` ... `</img>`, newlines)
PROMPT_TOKENS, INSTRUCTION_TOKENS, TAGS_PER_IMAGE = 16, 10, 7


def config_from_manifest(model: dict, source: str) -> Gr00tConfig:
    """The config an export's manifest records."""
    return Gr00tConfig.from_dict(model, source=source)


def default_workload(config: Gr00tConfig, image_sizes: Iterable[tuple[int, int]] = ((252, 336),), *,
                     cameras: int = 1, batch: int = 1, steps: int | None = None, bucket: int = 32) -> Workload:
    """A typical prompt: ``cameras`` images, their tags and a short instruction (``bench.roofline.workload``)."""
    pixels = config.patch_tokens_per_image_pixel
    return workload(image_sizes, lambda h, w: h * w // pixels + TAGS_PER_IMAGE, PROMPT_TOKENS + INSTRUCTION_TOKENS,
                    cameras=cameras, batch=batch, bucket=bucket,
                    steps=steps if steps is not None else config.num_inference_timesteps)


# ------------------------------------------------------------------------------------------ backbone
def _vision(led: Ledger, c: Gr00tConfig, w: Workload, *, ours: bool) -> None:
    v, bb = c.backbone.vision, c.backbone
    cv, iv, layers = v.hidden_size, v.intermediate_size, v.num_hidden_layers
    for h, wd, count in w.images:
        n = count * w.batch
        p = (h // v.patch_size) * (wd // v.patch_size)  # patches per image
        rows, graph = n * p, "vision"
        stage = f"vision_{h}x{wd}"
        led.linears("vision", graph, f"{stage}: patch embedding ({n} × {p} patches)",
                    [(v.patch_size**2 * v.num_channels, cv, rows, True)],
                    extra_other=(p if ours else v.num_patches) * cv)  # ours: pos-emb pre-resized per size
        per_layer = [(cv, cv, rows, True)] * 4 + [(cv, iv, rows, True), (iv, cv, rows, True)]
        led.linears("vision", graph, f"{stage}: {layers} encoder layers", per_layer * layers,
                    extra_other=layers * 4 * cv + 2 * cv)  # two LayerNorms per layer + post-LN
        led.add("vision", graph, f"{stage}: attention QKᵀ and PV (per image)", flops=layers * 2 * 2 * n * p * p * cv)
        t = p // bb.unshuffle_factor**2
        led.linears("vision", graph, f"{stage}: projector mlp1 ({n} × {t} tokens)",
                    [(bb.projector_in_dim, c.backbone_embedding_dim, n * t, True),
                     (c.backbone_embedding_dim, c.backbone_embedding_dim, n * t, True)],
                    extra_other=2 * bb.projector_in_dim)


def llm(led: Ledger, c: Any, w: Workload, seq: int, plan: tuple[dict, dict] = (FP8_PLAN, FP8_KEEP), *,
        final_norm: bool = True) -> None:
    """A Qwen3 decoder of ``c.select_layer`` layers on S = ``seq`` (N1.6's and N1.7's LLM); ``plan``: the
    family's fp8 (plan, keep), which decides the GEMMs counted at 1 byte; ``final_norm``: whether the
    graph applies the final RMSNorm (N1.7 reads the features before it)."""
    t = c.backbone.text
    e, layers, rows = t.hidden_size, c.select_layer, w.batch * seq
    q, kv = t.num_attention_heads * t.head_dim, t.num_key_value_heads * t.head_dim
    led.add("backbone", "backbone", f"embed_tokens: {rows} gathered rows", other=rows * e)
    per_layer = {"self_attn.q_proj": (e, q), "self_attn.k_proj": (e, kv), "self_attn.v_proj": (e, kv),
                 "self_attn.o_proj": (q, e), "mlp.gate_proj": (e, t.intermediate_size),
                 "mlp.up_proj": (e, t.intermediate_size), "mlp.down_proj": (t.intermediate_size, e)}
    planned = [is_planned("backbone", f"layers.{i}.{name}", plan=plan[0], keep=plan[1]) for i in range(layers) for name in per_layer]
    shapes = [(*shape, rows, False) for _ in range(layers) for shape in per_layer.values()]
    led.linears("backbone", "backbone", f"{layers} Qwen3 layers on S = {seq}: fp8-planned GEMMs",
                [s for s, p in zip(shapes, planned, strict=True) if p],
                extra_other=layers * (2 * t.head_dim + 2 * e) + (e if final_norm else 0))  # q/k, 2 RMSNorms
    led.linears("backbone", "backbone", f"{layers} Qwen3 layers on S = {seq}: GEMMs the fp8 plan keeps at fp16",
                [s for s, p in zip(shapes, planned, strict=True) if not p], fp8_kept=True)
    causal_pairs = w.batch * seq * (seq + 1) // 2
    led.add("backbone", "backbone", "causal attention QKᵀ and PV", flops=layers * 2 * 2 * causal_pairs * q)


# ------------------------------------------------------------------------------------------ action head
def state_encoder(led: Ledger, c: Any, w: Workload) -> None:
    led.linears("state_encoder", "state_encoder", "state encoder (one embodiment's slice)",
                [(c.max_state_dim, c.hidden_size, w.batch, True), (c.hidden_size, c.input_embedding_dim, w.batch, True)])


def block_kinds(c: Any) -> list[str]:
    """text / self / image per DiT block (same rule as gr00t_trt.model.action_head.dit_block_kinds,
    restated here because that module imports torch)."""
    period = 2 * c.attend_text_every_n_blocks
    return ["self" if i % 2 else ("text" if i % period == 0 else "image") for i in range(c.dit.num_layers)]


def denoise_step(led: Ledger, c: Any, w: Workload, seq: int, *, ours: bool) -> None:
    b, h, dim, e = w.batch, c.action_horizon, c.input_embedding_dim, c.backbone_embedding_dim
    tokens = h + 1  # the state token and the H action tokens
    n, rows = w.steps, b * (h + 1)
    kinds = block_kinds(c)
    n_self = kinds.count("self")
    n_cross = len(kinds) - n_self
    ff = 4 * dim
    # ---- action encoder
    if ours:
        led.linears("denoise", "action_encoder", "action encoder W1, W2 action half, W3",
                    [(c.max_action_dim, dim, b * h, True), (dim, dim, b * h, False), (dim, dim, b * h, True)],
                    times=n, extra_other=dim + h * dim)  # time-table row (PE·W2_t + b2), position rows
    else:
        led.linears("denoise", "action_encoder", "action encoder W1, W2 (on [a, PE(τ)]), W3",
                    [(c.max_action_dim, dim, b * h, True), (2 * dim, dim, b * h, True), (dim, dim, b * h, True)],
                    times=n, extra_other=h * dim)
    # ---- DiT conditioning: tables (ours) or the timestep MLP and modulation linears (reference)
    if ours:
        led.add("denoise", "dit", "AdaLN and output modulation: one step's table rows",
                other=len(kinds) * 2 * dim + 2 * dim, times=n)
    else:
        tp = c.dit.timestep_proj_dim
        led.linears("denoise", "dit", "timestep MLP (m = B)", [(tp, dim, b, True), (dim, dim, b, True)], times=n)
        led.linears("denoise", "dit", f"AdaLN modulation linears ×{len(kinds)} (m = B)",
                    [(dim, 2 * dim, b, True)] * len(kinds), times=n)
        led.linears("denoise", "dit", "proj_out_1 output modulation (m = B)", [(dim, 2 * dim, b, True)], times=n)
        led.linears("denoise", "dit", f"cross-attention to_k/to_v ×{n_cross} on S = {seq}",
                    [(e, dim, b * seq, True)] * (2 * n_cross), times=n)
    # ---- what both compute every step
    led.linears("denoise", "dit", f"to_q + to_out + feed-forward ×{len(kinds)}",
                [(dim, dim, rows, True), (dim, dim, rows, True), (dim, ff, rows, True), (ff, dim, rows, True)]
                * len(kinds), times=n)
    led.linears("denoise", "dit", f"self-attention to_k/to_v ×{n_self}", [(dim, dim, rows, True)] * (2 * n_self), times=n)
    attention = n_self * 2 * 2 * b * tokens * tokens * dim + n_cross * 2 * 2 * b * tokens * seq * dim
    led.add("denoise", "dit", "attention QKᵀ and PV", flops=attention, times=n)
    out_rows = b * h if ours else rows  # ours: only the action positions through the output layer
    led.linears("denoise", "dit", f"proj_out_2 on {out_rows // b} tokens", [(dim, c.hidden_size, out_rows, True)], times=n)
    led.linears("denoise", "action_decoder", f"action decoder on {out_rows // b} tokens",
                [(c.hidden_size, c.hidden_size, out_rows, True), (c.hidden_size, c.max_action_dim, out_rows, True)],
                times=n)


def vlln_and_cross_kv(led: Ledger, c: Any, w: Workload, seq: int, *, ours: bool) -> None:
    """``dit_context``'s VLLN and, in ours, every cross block's K/V as one stacked GEMM per control step
    (the reference computes them in every denoising step: ``denoise_step``)."""
    e, dim = c.backbone_embedding_dim, c.input_embedding_dim
    if ours:
        n_cross = sum(k != "self" for k in block_kinds(c))
        led.linears("dit_context", "dit_context", f"VLLN, stacked cross to_k/to_v of {n_cross} blocks on S = {seq}",
                    [(e, n_cross * dim, w.batch * seq, True)] * 2, extra_other=2 * e)
    else:
        led.add("dit_context", "dit_context", "VLLN", other=2 * e)


def side_of(workload: Workload, side: str) -> tuple[Ledger, bool, int]:
    """(an empty ledger, whether it is ours, the S it runs at) for ``side``."""
    if side not in SIDES:
        raise Gr00tTrtError(f"roofline side {side!r} — expected one of: {', '.join(SIDES)}")
    ours = side == "ours"
    return Ledger(side), ours, workload.padded_seq_len if ours else workload.seq_len


def count_work(config: Gr00tConfig, workload: Workload, side: str) -> list[WorkItem]:
    """Every weight read and FLOP of one control step on ``side`` ("ours" | "reference")."""
    led, ours, seq = side_of(workload, side)
    _vision(led, config, workload, ours=ours)
    llm(led, config, workload, seq)
    vlln_and_cross_kv(led, config, workload, seq, ours=ours)
    state_encoder(led, config, workload)
    denoise_step(led, config, workload, seq, ours=ours)
    return led.items


# ------------------------------------------------------------------------------------------ header check
def llm_layer_params(c: Any) -> int:
    """Parameters of one Qwen3 decoder layer (q/k/v/o, gate/up/down, q/k norms, two RMSNorms)."""
    t, emb = c.backbone.text, c.backbone.text.hidden_size
    q, kv = t.num_attention_heads * t.head_dim, t.num_key_value_heads * t.head_dim
    return 2 * emb * q + 2 * emb * kv + 3 * emb * t.intermediate_size + 2 * t.head_dim + 2 * emb


def action_head_params(c: Any) -> dict[str, int]:
    """Parameters of the action head parts N1.6 and N1.7 share (all embodiment slots): state encoder,
    action encoder, DiT, action decoder."""
    slots, dim, hid, emb = c.max_num_embodiments, c.input_embedding_dim, c.hidden_size, c.backbone_embedding_dim
    block_common = (dim * 2 * dim + 2 * dim) + 2 * (dim * dim + dim) + (dim * 4 * dim + 4 * dim) + (4 * dim * dim + dim)
    cross = block_common + 2 * (emb * dim + dim)
    self_ = block_common + 2 * (dim * dim + dim)
    tp = c.dit.timestep_proj_dim
    dit = (tp * dim + dim) + (dim * dim + dim) + sum(cross if k != "self" else self_ for k in block_kinds(c))
    dit += (dim * 2 * dim + 2 * dim) + (dim * hid + hid)
    return {
        "state encoder": slots * ((c.max_state_dim + 1) * hid + (hid + 1) * dim),
        "action encoder": slots * ((c.max_action_dim + 1) * dim + (2 * dim + 1) * dim + (dim + 1) * dim),
        "DiT": dit,
        "action decoder": slots * ((hid + 1) * hid + (hid + 1) * c.max_action_dim),
    }


def stored_params(config: Gr00tConfig) -> dict[str, int]:
    """Parameters each ``inspect`` component must hold for this config (all embodiment slots), derived
    from the same shape rules as ``count_work``: a checkpoint whose headers disagree is not the model
    the roofline describes."""
    c, v, t = config, config.backbone.vision, config.backbone.text
    cv, iv = v.hidden_size, v.intermediate_size
    vision = (v.patch_size**2 * v.num_channels + 1) * cv + v.num_patches * cv + 2 * cv
    vision += v.num_hidden_layers * (4 * (cv * cv + cv) + (cv * iv + iv) + (iv * cv + cv) + 4 * cv)
    proj_in, emb = c.backbone.projector_in_dim, c.backbone_embedding_dim
    head = action_head_params(c)
    return {
        "vision": vision,
        "projector": 2 * proj_in + proj_in * emb + emb + emb * emb + emb,
        "LLM embed": t.vocab_size * emb,
        "LLM layers + norm": c.select_layer * llm_layer_params(c) + emb,
        "VLLN": 2 * emb,
        **{k: head[k] for k in ("state encoder", "action encoder", "DiT", "action decoder")},
    }
