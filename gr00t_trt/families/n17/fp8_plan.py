"""N1.7's quantisation plans as data, in the vocabulary of N1.6's (``families/n16/fp8_plan.py``: fnmatch
patterns over a GEMM's role — its module path in the exported wrapper with indices as ``*``, or
``attention`` — and keep lists over paths with indices), chosen by measured sensitivity.

N1.7's backbone output is read before the LLM's final RMSNorm (spec §3.6): RMS 2.83 on the ``small``
preset against ≈ 1 for N1.6's normed features. §7's bounds were written for unit-scale features, so
verify compares N1.7's as the action head's VLLN sees them, standardised per token (the family's
``feature_view``, ``verification.parity``); the plans below were chosen in that view.

**Backbone at fp8** — measured on ``small`` (6 layers; ``benchmarks/n17_fp8_sensitivity.py``, table in
``benchmarks/results/n17_fp8_sensitivity_small.md``; worst of the 6 verify cases, view mean abs, raw in
brackets; the exported backbone's attention matmuls carry no layer path, so attention is planned in every
layer or none):
- N1.6's rule (q/k/v, gate/up, attention; layer 0 kept): 0.0428 (0.117) — under 0.05 but over the 0.04
  target; with down_proj instead of attention 0.0419; every GEMM but layer 0's 0.0557; nothing kept 0.0508;
- **q/k/v and gate/up, layer 0 kept, no attention: 0.0377 (0.102), cosine 0.99887** — 52 % of the
  backbone's GEMM FLOPs at fp8 (the most of any plan under 0.04; N1.6's rule keeping layers 0 and 1
  gives 0.0349 at 48 %). The attention matmuls stay fp16 (they cost 0.005 on top, for 6 % of the FLOPs).

**Backbone at int8** (W8A8: symmetric, per-output-channel weights, one max-calibrated scale per GEMM input;
Linear GEMMs only, as N1.6's int8 plan; ``benchmarks/results/n17_int8_sensitivity_small.md``): int8's
rounding costs far less than E4M3's — q/k/v + gate/up, layer 0 kept 0.0120 (0.034); with down_proj 0.0252;
every GEMM but layer 0's 0.0272; **every Linear GEMM of every layer: 0.0336 (0.089)**, the most FLOPs
under 0.04, so that is the plan.

The action-head graphs take N1.6's plans unchanged (N1.7's DiT is N1.6's at the same widths; the stacked
cross K/V of ``dit_context`` are quantised, its VL self-attention fp16): fp8 actions mean abs 0.024-0.030,
cosine ≥ 0.9995 on ``small`` (bound 0.1, 0.98).
"""

from __future__ import annotations

from ..n16.fp8_plan import FP8_PLAN as N16_FP8_PLAN
from ..n16.int8_plan import INT8_PLAN as N16_INT8_PLAN

#: the backbone's GEMMs are ``decoder.llm.layers.3.mlp.up_proj`` in the exported wrapper and ``layers.3...``
#: in the roofline: the patterns take both (``*`` spans dots)
BACKBONE_GEMMS = ("*layers.*.self_attn.[qkv]_proj", "*layers.*.mlp.gate_proj", "*layers.*.mlp.up_proj")
BACKBONE_KEEP = ("*layers.0.*",)  # the first decoder layer: the most sensitive (0.041 alone)

FP8_PLAN: dict[str, tuple[str, ...]] = {
    "backbone": BACKBONE_GEMMS,
    "dit_context": N16_FP8_PLAN["dit_context"],
    "dit": N16_FP8_PLAN["dit"],
}
FP8_KEEP: dict[str, tuple[str, ...]] = {"backbone": BACKBONE_KEEP}
INT8_PLAN: dict[str, tuple[str, ...]] = {
    "backbone": ("*layers.*.self_attn.*_proj", "*layers.*.mlp.*_proj"),  # every Linear GEMM of every layer
    "dit_context": N16_INT8_PLAN["dit_context"],
    "dit": N16_INT8_PLAN["dit"],
}
INT8_KEEP: dict[str, tuple[str, ...]] = {}
