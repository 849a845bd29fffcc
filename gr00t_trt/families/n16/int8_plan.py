"""The int8 (W8A8) plan as data: which graphs an int8 export quantises and which of their GEMMs — read by
the export (``export/precision.py``, ``export/quantize.py``) like the fp8 plan (``fp8_plan.py``, whose
role/pattern vocabulary it shares). No torch, no onnx.

int8 is the low precision of GPUs without fp8 (Jetson Orin, Ampere sm_87; TensorRT 10.3 on JetPack 6) and
the one ONNX Runtime's CPU provider has integer GEMM kernels for. Symmetric signed int8: per-channel weight
scales (axis 0 of the weight as TensorRT reads it, the output channel), one per-tensor activation scale,
zero point 0 (``quantize.py`` writes it with ModelOpt's int8 mode).

Only GEMMs of a weight (Linear) are planned: the attention matmuls multiply two activations, which
per-tensor int8 represents poorly (softmax probabilities in [0, 1] at 1/127 steps) and TensorRT 10.3 fuses
its fp16 attention anyway. Which Linear GEMMs stay high precision follows the same measured rule as fp8
(the first decoder layer and the residual-writing ``o_proj``/``down_proj``); ``quantize.py`` and the
README give the numbers of the int8 plan on the ``small`` preset.
"""

from __future__ import annotations

#: graph kind -> fnmatch patterns over a GEMM's role (module path with indices as ``*``)
INT8_PLAN: dict[str, tuple[str, ...]] = {
    "vision": ("encoder_layers.*.self_attn.*_proj", "encoder_layers.*.mlp.fc*", "mlp1.*"),
    "backbone": ("layers.*.self_attn.[qkv]_proj", "layers.*.mlp.gate_proj", "layers.*.mlp.up_proj"),
    "dit_context": ("to_k", "to_v"),
    "dit": ("transformer_blocks.*.to_*", "transformer_blocks.*.ff_*"),
}
#: graph kind -> fnmatch patterns over a GEMM's module path with its indices, kept at high precision
INT8_KEEP: dict[str, tuple[str, ...]] = {
    "backbone": ("layers.0.*",),
}
