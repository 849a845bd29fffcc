"""Thin helpers over ``cuda.bindings.runtime`` for the TensorRT backend (tensorrt-notes §5).

Every cuda-python call returns ``(cudaError_t, *values)``; ``call`` checks it and raises one line. Host
memory given to numpy is pinned (``cudaMallocHost``) or mapped (``cudaHostAlloc(..., Mapped)``, zero-copy
on integrated GPUs); numpy sees it through a ctypes view, as a byte buffer so fp8/bf16 work too.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from ..base.errors import BackendError


def error_text(err: Any) -> str:
    name = getattr(err, "name", None)
    return f"{name} ({int(err)})" if name else str(int(err))


def call(result: tuple, what: str) -> Any:
    """The value(s) of a cuda-python call, or a BackendError naming the call and the CUDA error."""
    err, *values = result
    if int(err) != 0:
        raise BackendError(f"{what} failed with {error_text(err)}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def host_view(address: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A numpy array over ``address`` (pinned or mapped host memory owned by CUDA)."""
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    raw = (ctypes.c_ubyte * max(nbytes, 1)).from_address(int(address))
    return np.frombuffer(raw, dtype=np.uint8, count=nbytes).view(dtype).reshape(shape)


@dataclass(eq=False)
class Memory:
    """One buffer's memory: ``device`` is what TensorRT reads/writes; ``host`` the pinned/mapped mirror."""

    device: int
    host: int | None
    nbytes: int
    mapped: bool  # host and device are the same memory (integrated GPU, zero-copy)


class Cuda:
    """The few CUDA runtime calls the backend makes, on one device and one non-default stream."""

    def __init__(self, cudart: ModuleType, device_id: int) -> None:
        self.rt = cudart
        self.device_id = device_id
        self._thread = threading.local()  # which host threads have made device_id current
        self.use_device()
        self.stream = call(cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking), "cudaStreamCreateWithFlags")

    def use_device(self) -> None:
        """Make the device current on the calling thread (``cudaSetDevice`` is per thread; once per thread)."""
        if not getattr(self._thread, "current", False):
            call(self.rt.cudaSetDevice(self.device_id), f"cudaSetDevice({self.device_id})")
            self._thread.current = True

    def close(self) -> None:
        if self.stream is not None:
            call(self.rt.cudaStreamDestroy(self.stream), "cudaStreamDestroy")
            self.stream = None

    # ----------------------------------------------------------------- memory
    def alloc(self, nbytes: int, *, host: bool, mapped: bool) -> Memory:
        nbytes = max(int(nbytes), 1)
        if host and mapped:
            ptr = call(self.rt.cudaHostAlloc(nbytes, self.rt.cudaHostAllocMapped), f"cudaHostAlloc({nbytes}, Mapped)")
            device = call(self.rt.cudaHostGetDevicePointer(ptr, 0), "cudaHostGetDevicePointer")
            return Memory(int(device), int(ptr), nbytes, True)
        device = call(self.rt.cudaMalloc(nbytes), f"cudaMalloc({nbytes})")
        pinned = call(self.rt.cudaMallocHost(nbytes), f"cudaMallocHost({nbytes})") if host else None
        return Memory(int(device), None if pinned is None else int(pinned), nbytes, False)

    def free(self, memory: Memory) -> None:
        if memory.mapped:
            call(self.rt.cudaFreeHost(memory.host), "cudaFreeHost")
            return
        call(self.rt.cudaFree(memory.device), "cudaFree")
        if memory.host is not None:
            call(self.rt.cudaFreeHost(memory.host), "cudaFreeHost")

    def copy(self, dst: int, src: int, nbytes: int, kind: str) -> None:
        direction = {"htod": self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice,
                     "dtoh": self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                     "dtod": self.rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice}[kind]
        call(self.rt.cudaMemcpyAsync(dst, src, nbytes, direction, self.stream), f"cudaMemcpyAsync({kind})")

    # ----------------------------------------------------------------- ordering and timing
    def synchronize(self) -> None:
        call(self.rt.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")

    def event(self) -> Any:
        return call(self.rt.cudaEventCreate(), "cudaEventCreate")

    def record(self, event: Any) -> None:
        call(self.rt.cudaEventRecord(event, self.stream), "cudaEventRecord")

    def elapsed_ms(self, start: Any, end: Any) -> float:
        return float(call(self.rt.cudaEventElapsedTime(start, end), "cudaEventElapsedTime"))

    def destroy_event(self, event: Any) -> None:
        call(self.rt.cudaEventDestroy(event), "cudaEventDestroy")

    # ----------------------------------------------------------------- graphs
    def begin_capture(self) -> None:
        call(self.rt.cudaStreamBeginCapture(self.stream, self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal),
             "cudaStreamBeginCapture")

    def end_capture(self) -> Any:
        """(graph, None) or (None, reason) — a failed capture is not fatal: the caller falls back."""
        err, graph = self.rt.cudaStreamEndCapture(self.stream)
        if int(err) != 0:
            self.rt.cudaGetLastError()  # clear the sticky capture error, as trtexec does
            return None, f"cudaStreamEndCapture failed with {error_text(err)}"
        return graph, None

    def instantiate(self, graph: Any) -> Any:
        return call(self.rt.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")

    def launch_graph(self, graph_exec: Any) -> None:
        call(self.rt.cudaGraphLaunch(graph_exec, self.stream), "cudaGraphLaunch")

    def destroy_graph(self, graph: Any, graph_exec: Any) -> None:
        if graph_exec is not None:
            call(self.rt.cudaGraphExecDestroy(graph_exec), "cudaGraphExecDestroy")
        if graph is not None:
            call(self.rt.cudaGraphDestroy(graph), "cudaGraphDestroy")
