"""The GPU and TensorRT of this machine, probed without creating a TensorRT object first.

A TensorRT ``Builder`` on a machine without a working driver is a ``TypeError`` from pybind11 (or an abort
on some releases: tensorrt-notes §0.10), so the GPU is asked through ``cuda.bindings.runtime`` first:
its functions return error codes instead of raising.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

from ..base.errors import EngineError, require
from ..runtime.cuda_python import (  # load_cudart: either layout (12.6.0: cuda.cudart)
    ask,
    load_cudart,
    no_gpu_hint,
)

__all__ = ["GpuInfo", "load_cudart", "load_tensorrt", "probe_gpu"]


@dataclass(frozen=True)
class GpuInfo:
    """One CUDA device as the engine cache and the doctor need it."""

    index: int
    name: str
    compute_capability: tuple[int, int]
    total_memory: int  # bytes
    integrated: bool  # shares DRAM with the CPU (Jetson Thor/Orin)

    @property
    def sm(self) -> str:
        """``"8.9"`` style compute capability."""
        return f"{self.compute_capability[0]}.{self.compute_capability[1]}"


#: lowest compute capability with tensor-core support for a precision (fp8: Ada/Hopper, fp4: Blackwell)
PRECISION_MIN_SM = {"int8": (7, 2), "bf16": (8, 0), "fp8": (8, 9), "fp4": (10, 0)}


def supports_precision(compute_capability: tuple[int, int] | None, precision: str) -> bool:
    """Whether a GPU of this compute capability runs ``precision`` GEMMs (no GPU: False)."""
    return compute_capability is not None and tuple(compute_capability) >= PRECISION_MIN_SM.get(precision, (0, 0))


def load_tensorrt() -> ModuleType:
    """The installed ``tensorrt`` module (``tensorrt_bindings`` when only the bindings wheel is present)."""
    import importlib

    try:
        return importlib.import_module("tensorrt")
    except ImportError:
        pass
    try:
        return importlib.import_module("tensorrt_bindings")
    except ImportError:
        return require("tensorrt", "tensorrt", "building or running TensorRT engines")


def cuda_error_text(err: object) -> str:
    """``cudaErrorInsufficientDriver (35)`` from a cuda-python error enum (or a bare int)."""
    name = getattr(err, "name", None)
    return f"{name} ({int(err)})" if name else str(int(err))  # type: ignore[call-overload]


def probe_gpu(device_id: int = 0, cudart: ModuleType | None = None) -> GpuInfo:
    """Name, compute capability, memory and kind of CUDA device ``device_id``; one-line error if none."""
    cudart = cudart or load_cudart()
    err, count = ask(cudart.cudaGetDeviceCount)  # 12.6.x raises without libcuda: one line, not a traceback
    if int(err) != 0:
        raise EngineError(f"no usable CUDA GPU — cudaGetDeviceCount returned {cuda_error_text(err)} — {no_gpu_hint(cudart)}")
    if not count:
        raise EngineError("no CUDA GPU — cudaGetDeviceCount found 0 devices — use backend='ort' on this machine")
    if not 0 <= device_id < count:
        raise EngineError(f"CUDA device {device_id} does not exist — expected 0..{count - 1}")
    err, prop = cudart.cudaGetDeviceProperties(device_id)
    if int(err) != 0:
        raise EngineError(f"cudaGetDeviceProperties({device_id}) failed with {cuda_error_text(err)}")
    name = prop.name.decode(errors="replace").rstrip("\x00") if isinstance(prop.name, bytes) else str(prop.name)
    return GpuInfo(device_id, name, (int(prop.major), int(prop.minor)), int(prop.totalGlobalMem), bool(prop.integrated))
