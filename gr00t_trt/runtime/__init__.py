"""Backend-neutral pipeline, the robot-facing Policy and the backends; never imports torch.

Names are resolved lazily so that ``import gr00t_trt.runtime`` stays cheap (no numpy-heavy or
onnxruntime import until something is used).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Policy": "policy",
    "make_backend": "registry",
    "register_backend": "registry",
    "Pipeline": "pipeline",
    "HeadInputs": "pipeline",
    "Backend": "backend",
    "Buffer": "backend",
    "Binding": "backend",
    "Copy": "backend",
    "Program": "backend",
    "GraphInfo": "backend",
    "OrtBackend": "ort_backend",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'gr00t_trt.runtime' has no attribute {name!r}")
