"""N1.7's quantisation plans as data, in the vocabulary of N1.6's (``families/n16/fp8_plan.py``: fnmatch
patterns over a GEMM's role — its module path in the exported wrapper with indices as ``*``, or
``attention`` — and keep lists over paths with indices), chosen by measured sensitivity.

**The backbone has no fp8 plan**: N1.7's backbone output is read before the LLM's final RMSNorm (spec
§3.6), so its magnitudes grow with depth (RMS 2.83 on the ``small`` preset, against ≈ 1 for N1.6's
normed features) while §7's fp8 bound is absolute (mean abs ≤ 0.05), and fp8 anywhere in the decoder
costs more of it than N1.6's does. Measured on ``small`` (6 layers; ``benchmarks/n17_fp8_sensitivity.py``,
table in ``benchmarks/results/n17_fp8_sensitivity_small.md``; worst of the 6 verify cases):
- one GEMM group alone at fp8 costs 0.018-0.071 (the first layer most, the last least), the attention
  matmuls of every layer together 0.048 (ONNX Q/DQ, real quantiser: 0.0478 — the simulation's 0.0482);
- N1.6's rule (q/k/v, gate/up, attention; layer 0 kept): 0.108; keeping the most sensitive layers
  until under 0.04 leaves the last layer alone: 0.033 with 11 % of the backbone's GEMM FLOPs at fp8.
  One layer of fp8 out of 16 at full size is not worth an fp8 engine, so the backbone stays fp16 in
  an N1.7 fp8 export (``--graph-precision backbone=fp16``; the export says so when it is not given).
The action-head graphs take N1.6's plan unchanged (N1.7's DiT is N1.6's at the same widths; the
stacked cross K/V of ``dit_context`` are fp8, its VL self-attention fp16): actions mean abs 0.024-0.030,
cosine ≥ 0.9995 on ``small`` (bound 0.1, 0.98).
"""

from __future__ import annotations

from ..n16.fp8_plan import FP8_PLAN as N16_FP8_PLAN

FP8_PLAN: dict[str, tuple[str, ...]] = {
    "dit_context": N16_FP8_PLAN["dit_context"],
    "dit": N16_FP8_PLAN["dit"],
}
FP8_KEEP: dict[str, tuple[str, ...]] = {}
INT8_PLAN: dict[str, tuple[str, ...]] = {}
INT8_KEEP: dict[str, tuple[str, ...]] = {}
