"""Quantisation plans in general: the precision each graph kind gets by default under ``--precision fp8``
/ ``int8``, and how a family's per-graph plan (fnmatch patterns over GEMM roles) and keep list (patterns
over module paths with indices) select a GEMM. The plans themselves are family data (``FamilyExport``:
``FP8_PLAN``, ``FP8_KEEP``, ``INT8_PLAN``, ``INT8_KEEP``). Stdlib only: ``inspect`` and ``bench
--model-only`` read it without torch or onnx.

A GEMM is named by its module path in the exported graph wrapper (``layers.3.mlp.up_proj``; the matmuls
of an attention carry their attention module's path and the role ``attention``).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping

#: precision of every graph kind in an fp8 export (architecture §5): the GEMM-heavy graphs at fp8, vision
#: and the small graphs at fp16
FP8_DEFAULTS: dict[str, str] = {
    "vision": "fp16", "backbone": "fp8", "dit_context": "fp8", "state_encoder": "fp16",
    "action_encoder": "fp16", "dit": "fp8", "action_decoder": "fp16",
}
#: precision of every graph kind in an int8 export for a GPU (``--device orin``): the GEMM-heavy LLM and DiT
#: graphs at int8, vision and the small graphs at fp16
INT8_DEFAULTS: dict[str, str] = {
    "vision": "fp16", "backbone": "int8", "dit_context": "int8", "state_encoder": "fp16",
    "action_encoder": "fp16", "dit": "int8", "action_decoder": "fp16",
}
#: precision of every graph kind in an int8 export for ONNX Runtime's CPU provider (``--precision int8``
#: without ``--device``): the LLM and DiT graphs at int8, everything else fp32 (the CPU provider has no fp16
#: kernels: an fp16 graph is cast around every op and runs slower than fp32). The vision tower has an int8
#: plan and runs 2.6× faster with it, but is kept fp32: at full size its error doubles the end-to-end
#: features' (mean abs 0.0225 → 0.0444 against a bound of 0.05; `benchmarks/results/int8_full_cpu.md`);
#: ``--graph-precision vision=int8`` takes it
INT8_CPU_DEFAULTS: dict[str, str] = {
    "vision": "fp32", "backbone": "int8", "dit_context": "int8", "state_encoder": "fp32",
    "action_encoder": "fp32", "dit": "int8", "action_decoder": "fp32",
}
#: a ``--device``'s quantised defaults, by the low precision its tensor cores have (a GPU: TensorRT runs the
#: rest in fp16)
DEVICE_QUANTISED_DEFAULTS: dict[str, dict[str, str]] = {"fp8": FP8_DEFAULTS, "int8": INT8_DEFAULTS}


def device_defaults(tflops: Mapping[str, float]) -> dict[str, str]:
    """A device's plan from its tensor-core rates (``bench.devices``): fp8 defaults where it has fp8, else
    int8 defaults where it has int8 (Orin, Ampere sm_87: never fp8), else fp16 everywhere."""
    for precision, defaults in DEVICE_QUANTISED_DEFAULTS.items():
        if precision in tflops:
            return dict(defaults)
    return dict.fromkeys(FP8_DEFAULTS, "fp16")


#: graphs that may be quantised (GEMM-heavy); the small graphs stay in higher precision
QUANTISABLE_KINDS = ("vision", "backbone", "dit_context", "dit")


def role_of(path: str, attention: bool = False) -> str:
    """``transformer_blocks.*.to_q`` for ``transformer_blocks.3.to_q``; ``attention`` for an attention matmul."""
    return "attention" if attention else ".".join("*" if part.isdigit() else part for part in path.split("."))


def is_planned(kind: str, path: str, attention: bool, plan: Mapping[str, tuple[str, ...]],
               keep: Mapping[str, tuple[str, ...]] | None = None) -> bool:
    """True when ``plan`` (less ``keep``) of graph ``kind`` quantises the GEMM at module ``path``."""
    keep = keep or {}
    if any(fnmatch.fnmatchcase(path, p) for p in keep.get(kind, ())):
        return False
    role = role_of(path, attention)
    return any(fnmatch.fnmatchcase(role, p) for p in plan.get(kind, ()))
