"""gr00t-trt: deploy NVIDIA GR00T N1.6 and N1.7 policies with TensorRT and ONNX Runtime.

Importing the package is cheap and torch-free; ``Policy`` is loaded on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Policy", "__version__"]


def __getattr__(name: str):
    if name == "Policy":
        from .runtime.policy import Policy

        return Policy
    raise AttributeError(f"module 'gr00t_trt' has no attribute {name!r}")
