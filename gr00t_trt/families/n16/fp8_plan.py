"""N1.6's fp8 plan as data: which GEMMs of the graphs an fp8 export quantises (architecture §5) —
read by the export (``export/precision.py``, ``export/quantize.py``, which says why each entry is there,
with the measurements) and by the size and roofline estimates, which must count exactly what the export
quantises. No torch, no onnx: ``bench --model-only`` and ``inspect`` import it.

GEMMs are named as ``contract.quant_plans`` says (which also holds the per-kind fp8 defaults).
"""

from __future__ import annotations

from ...contract.quant_plans import FP8_DEFAULTS, role_of
from ...contract.quant_plans import is_planned as planned_by

__all__ = ["FP8_DEFAULTS", "FP8_KEEP", "FP8_PLAN", "is_planned", "role_of"]

#: graph kind -> fnmatch patterns over a GEMM's role (module path with indices as ``*``, or
#: ``attention`` for the two matmuls of an attention)
FP8_PLAN: dict[str, tuple[str, ...]] = {
    "vision": ("encoder_layers.*.self_attn.*_proj", "encoder_layers.*.mlp.fc*", "mlp1.*", "attention"),
    # not o_proj, down_proj (quantize.py's docstring)
    "backbone": ("layers.*.self_attn.[qkv]_proj", "layers.*.mlp.gate_proj", "layers.*.mlp.up_proj", "attention"),
    "dit_context": ("to_k", "to_v"),
    "dit": ("transformer_blocks.*.to_*", "transformer_blocks.*.ff_*", "attention"),
}
#: graph kind -> fnmatch patterns over a GEMM's module path *with* its indices: GEMMs kept at high
#: precision although their role is planned
FP8_KEEP: dict[str, tuple[str, ...]] = {
    "backbone": ("layers.0.*",),  # the first decoder layer (quantize.py's docstring)
}


def is_planned(kind: str, path: str, attention: bool = False, plan: dict | None = None, keep: dict | None = None) -> bool:
    """True when the plan of graph ``kind`` (N1.6's fp8 one unless ``plan``/``keep`` are given, e.g. the
    int8 plan) quantises the GEMM at module ``path``."""
    return planned_by(kind, path, attention, *((FP8_PLAN, FP8_KEEP) if plan is None else (plan, keep)))
