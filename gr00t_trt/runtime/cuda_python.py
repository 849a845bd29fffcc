"""Which cuda-python is installed, its runtime module in either layout, and whether the driver can run it.

Facts from the real wheels (tensorrt-notes §5 "cuda-python per platform"):

* ``cuda.bindings.runtime`` exists from cuda-python 12.6.1 on; 12.6.0 has only ``cuda.cudart`` (same
  functions); 13.x has only ``cuda.bindings``. So we try the new layout, then the old one.
* Without ``libcuda.so.1``, 12.6.x *raises* ``RuntimeError("Failed to dlopen libcuda.so.1")`` (later calls:
  ``Function "cuInit" not found``); 12.9 and 13.x *return* ``cudaErrorInsufficientDriver`` (35).
* 13.x needs a CUDA-13 driver (r580+): on JetPack 6 (CUDA 12.6) or an older x86 driver every call returns
  35. ``cudaRuntimeGetVersion`` works without a driver and names the CUDA the bindings were made for.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from ..base.errors import EngineError, MissingDependencyError

#: the runtime module, newest layout first
LAYOUTS = ("cuda.bindings.runtime", "cuda.cudart")
#: what to install, per CUDA major of the driver (pyproject's extras)
INSTALL = {12: "pip install 'gr00t-trt[trt]'  (cuda-python 12.x)", 13: "pip install 'gr00t-trt[trt-cu13]'  (cuda-python 13.x)"}
NO_GPU_HINT = "TensorRT needs an NVIDIA GPU and driver; use backend='ort' on this machine"


def load_cudart() -> ModuleType:
    """The CUDA runtime bindings of the installed cuda-python, whichever layout it has."""
    for name in LAYOUTS:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise MissingDependencyError(
        "talking to the CUDA runtime needs cuda-python (module 'cuda.bindings.runtime' or 'cuda.cudart'), "
        f"which is not installed — {INSTALL[12]}, or on Jetson Thor / drivers r580+: {INSTALL[13]}")


def layout(cudart: ModuleType) -> str:
    """The import name ``cudart`` was loaded under."""
    return next((name for name in LAYOUTS if sys.modules.get(name) is cudart), LAYOUTS[0])


def ask(function: Callable[..., tuple], *args: Any) -> tuple:
    """``function(*args)`` of a cuda-python runtime module; a raised RuntimeError (cuda-python 12.6.x without a
    driver library) becomes the one-line EngineError "no usable CUDA GPU — <what happened> — <hint>"."""
    try:
        return function(*args)
    except (RuntimeError, OSError) as exc:  # cuda.pathfinder's DynamicLibNotFoundError is a RuntimeError
        name = getattr(function, "__name__", "a CUDA runtime call")
        raise EngineError(f"no usable CUDA GPU — {name} raised {type(exc).__name__}: {exc} (no NVIDIA driver "
                          f"library) — {NO_GPU_HINT}") from None


def version_text(code: int) -> str:
    """12060 → "12.6" (CUDA's ``1000 * major + 10 * minor``)."""
    return f"{code // 1000}.{code % 1000 // 10}"


@dataclass(frozen=True)
class CudaPython:
    """The installed cuda-python as doctor reports it."""

    version: str  # the package's version, e.g. "12.6.2.post1"
    layout: str  # "cuda.bindings.runtime" or "cuda.cudart"
    runtime: int  # CUDA version the bindings implement (cudaRuntimeGetVersion), e.g. 13040
    driver: int | None  # CUDA version the driver supports (cudaDriverGetVersion); None/0: no driver

    @property
    def mismatch(self) -> str | None:
        """Why this cuda-python cannot talk to this driver, with what to install instead; None if it can."""
        if not self.driver:
            return None  # no driver at all: the gpu line says so
        need, have = self.runtime // 1000, self.driver // 1000
        if have >= need:
            return None
        floor = " (r580 or newer)" if need >= 13 else ""
        return (f"cuda-python {self.version} needs a CUDA {need} driver{floor}, this driver supports CUDA "
                f"{version_text(self.driver)} — install the CUDA {have} line: {INSTALL.get(have, INSTALL[12])}")


def describe(cudart: ModuleType) -> CudaPython:
    """Version, layout, CUDA runtime and driver versions of ``cudart``; never raises for a missing driver."""
    where = layout(cudart)
    package = sys.modules.get(where.rpartition(".")[0])  # cuda.bindings, or cuda (12.6.0)
    version = str(getattr(package, "__version__", "?"))
    err, runtime = cudart.cudaRuntimeGetVersion()
    try:
        derr, driver = cudart.cudaDriverGetVersion()
        driver = int(driver) if int(derr) == 0 else None
    except RuntimeError:  # 12.6.x without libcuda
        driver = None
    return CudaPython(version, where, int(runtime) if int(err) == 0 else 0, driver)


def driver_line(info: CudaPython) -> tuple[str, bool]:
    """Doctor's "cuda driver" row: (text, ok)."""
    if not info.driver:
        return "none — libcuda.so.1 not found or no NVIDIA driver loaded", False
    problem = info.mismatch
    if problem:
        return f"CUDA {version_text(info.driver)} — {problem}", False
    return f"CUDA {version_text(info.driver)} (cuda-python made for CUDA {version_text(info.runtime)})", True


def no_gpu_hint(cudart: ModuleType) -> str:
    """What to do when the runtime reports no usable GPU: the cuda-python line to install if the driver is
    too old for this one (13.x on a CUDA 12 driver), else use ONNX Runtime."""
    try:
        return describe(cudart).mismatch or NO_GPU_HINT
    except Exception:  # noqa: BLE001 - a hint must never hide the error it explains
        return NO_GPU_HINT
