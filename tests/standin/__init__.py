"""An in-repo stand-in of the object-creating part of ``tensorrt`` and of ``cuda.bindings.runtime``.

Architecture §10: no GPU in CI, so TensorRT code runs against these doubles. "Device" memory is host
memory at real addresses, streams run work when it is enqueued (or record it while capturing), and an
"engine" runs the ONNX file it was built from with ONNX Runtime. The documented contract is enforced:
execute before every address is set fails; capture on the default stream fails; capturing a context that
was not warmed up fails; launching a captured graph after a shape or address change fails; a build can
be made to return None; plans carry a real header; a layer can be made to come back fp32.
``tests/trt_real`` checks every class, method and enum offered here against the real modules.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from types import ModuleType

from . import cudart, tensorrt
from .state import STATE, StandinContractError, reset

__all__ = ["STATE", "StandinContractError", "cudart", "install", "reset", "tensorrt"]


@contextmanager
def install(monkeypatch=None):
    """Make ``import tensorrt`` and ``from cuda.bindings import runtime`` give the stand-ins."""
    reset()
    cudart.reset_handles()
    cuda = ModuleType("cuda")
    bindings = ModuleType("cuda.bindings")
    bindings.runtime = cudart  # type: ignore[attr-defined]
    cuda.bindings = bindings  # type: ignore[attr-defined]
    modules = {"tensorrt": tensorrt, "cuda": cuda, "cuda.bindings": bindings, "cuda.bindings.runtime": cudart}
    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)
    try:
        yield STATE
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
        reset()
        cudart.reset_handles()
