"""The fp8 plan as data: which graphs an fp8 export quantises (architecture §5) and which of their GEMMs —
read by the export (``export/precision.py``, ``export/quantize.py``, which says why each entry is there,
with the measurements) and by the size and roofline estimates, which must count exactly what the export
quantises. No torch, no onnx: ``bench --model-only`` and ``inspect`` import it.

A GEMM is named by its module path in the exported graph wrapper (``layers.3.mlp.up_proj``; the matmuls
of an attention carry their attention module's path and the role ``attention``).
"""

from __future__ import annotations

import fnmatch

#: precision of every graph kind in an fp8 export (architecture §5): the GEMM-heavy graphs at fp8, vision
#: and the small graphs at fp16
FP8_DEFAULTS: dict[str, str] = {
    "vision": "fp16", "backbone": "fp8", "dit_context": "fp8", "state_encoder": "fp16",
    "action_encoder": "fp16", "dit": "fp8", "action_decoder": "fp16",
}
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


def role_of(path: str, attention: bool = False) -> str:
    """``transformer_blocks.*.to_q`` for ``transformer_blocks.3.to_q``; ``attention`` for an attention matmul."""
    return "attention" if attention else ".".join("*" if part.isdigit() else part for part in path.split("."))


def is_planned(kind: str, path: str, attention: bool = False, plan: dict | None = None, keep: dict | None = None) -> bool:
    """True when the plan of graph ``kind`` (the fp8 one unless ``plan``/``keep`` are given, e.g. the int8
    plan) quantises the GEMM at module ``path``."""
    plan, keep = (FP8_PLAN, FP8_KEEP) if plan is None else (plan, keep or {})
    if any(fnmatch.fnmatchcase(path, p) for p in keep.get(kind, ())):
        return False
    role = role_of(path, attention)
    return any(fnmatch.fnmatchcase(role, p) for p in plan.get(kind, ()))
