"""Stand-in of ``cuda.bindings.runtime``: the calls gr00t-trt makes, same names, arguments and return tuples.

Every function returns ``(cudaError_t, *values)`` like the real one. Streams run work at enqueue time;
between ``cudaStreamBeginCapture`` and ``cudaStreamEndCapture`` they record it instead, and a graph
launch replays the recording.
"""

from __future__ import annotations

import ctypes
import time
from enum import IntEnum
from types import SimpleNamespace

from .state import STATE, StandinContractError


class cudaError_t(IntEnum):  # noqa: N801 - real names
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorInsufficientDriver = 35
    cudaErrorInvalidDevice = 101
    cudaErrorNoDevice = 100
    cudaErrorInvalidResourceHandle = 400
    cudaErrorIllegalState = 401
    cudaErrorNotReady = 600
    cudaErrorStreamCaptureUnsupported = 900
    cudaErrorStreamCaptureInvalidated = 901
    cudaErrorStreamCaptureWrongThread = 908


class cudaMemcpyKind(IntEnum):  # noqa: N801
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
    cudaMemcpyDeviceToDevice = 3
    cudaMemcpyDefault = 4


class cudaStreamCaptureMode(IntEnum):  # noqa: N801
    cudaStreamCaptureModeGlobal = 0
    cudaStreamCaptureModeThreadLocal = 1
    cudaStreamCaptureModeRelaxed = 2


class cudaDeviceAttr(IntEnum):  # noqa: N801
    cudaDevAttrIntegrated = 18
    cudaDevAttrCanMapHostMemory = 19


cudaHostAllocDefault = 0
cudaHostAllocPortable = 1
cudaHostAllocMapped = 2
cudaStreamNonBlocking = 1

_ok = cudaError_t.cudaSuccess
_streams: dict[int, list | None] = {}  # stream -> captured work while capturing, else None
_graphs: dict[int, list] = {}
_execs: dict[int, list] = {}
_events: dict[int, float | None] = {}
_next = [0x5000]


def _handle(table: dict, value) -> int:
    _next[0] += 16
    table[_next[0]] = value
    return _next[0]


def _no_device():
    return None if STATE.device_count else cudaError_t.cudaErrorNoDevice


def _stream_key(stream) -> int:
    return int(stream or 0)


def enqueue(stream, work) -> cudaError_t:
    """Run ``work`` now, or record it if ``stream`` is capturing (used by the tensorrt stand-in too)."""
    key = _stream_key(stream)
    if key and key not in _streams:
        return cudaError_t.cudaErrorInvalidResourceHandle
    captured = _streams.get(key)
    if captured is not None:
        captured.append(work)
    else:
        work()
    return _ok


def is_capturing(stream) -> bool:
    return _streams.get(_stream_key(stream)) is not None


# ------------------------------------------------------------------------------------------ device
def cudaGetDeviceCount():  # noqa: N802
    if not STATE.device_count:
        return cudaError_t.cudaErrorNoDevice, 0
    return _ok, STATE.device_count


def cudaGetDeviceProperties(device):  # noqa: N802
    if (err := _no_device()) is not None or not 0 <= int(device) < STATE.device_count:
        return err or cudaError_t.cudaErrorInvalidDevice, None
    major, minor = STATE.compute_capability
    return _ok, SimpleNamespace(name=STATE.device_name.encode(), major=major, minor=minor,
                                totalGlobalMem=STATE.total_memory, integrated=int(STATE.integrated),
                                canMapHostMemory=1)


def cudaDeviceGetAttribute(attr, device):  # noqa: N802
    if (err := _no_device()) is not None:
        return err, 0
    values = {cudaDeviceAttr.cudaDevAttrIntegrated: int(STATE.integrated), cudaDeviceAttr.cudaDevAttrCanMapHostMemory: 1}
    return _ok, values[cudaDeviceAttr(attr)]


def cudaSetDevice(device):  # noqa: N802
    if (err := _no_device()) is not None or not 0 <= int(device) < STATE.device_count:
        return (err or cudaError_t.cudaErrorInvalidDevice,)
    return (_ok,)


def cudaGetLastError():  # noqa: N802
    return (_ok,)


def cudaRuntimeGetVersion():  # noqa: N802 - the CUDA these bindings implement (tests/standin/cudart_lines.py varies it)
    return _ok, 13040


def cudaDriverGetVersion():  # noqa: N802 - the CUDA the driver supports
    return _ok, 13000


# ------------------------------------------------------------------------------------------ memory
def _alloc(size, kind):
    if (err := _no_device()) is not None:
        return err, 0
    if int(size) < 0:
        return cudaError_t.cudaErrorInvalidValue, 0
    STATE.record("cudart", f"alloc:{kind}")
    return _ok, STATE.allocate(int(size), kind)


def cudaMalloc(size):  # noqa: N802
    return _alloc(size, "device")


def cudaMallocHost(size):  # noqa: N802
    return _alloc(size, "host")


def cudaHostAlloc(size, flags):  # noqa: N802
    return _alloc(size, "mapped" if int(flags) & cudaHostAllocMapped else "host")


def cudaHostGetDevicePointer(pHost, flags):  # noqa: N802, N803
    entry = STATE.heap.get(int(pHost))
    if entry is None or entry[1] != "mapped":
        return cudaError_t.cudaErrorInvalidValue, 0
    return _ok, int(pHost)


def cudaFree(devPtr):  # noqa: N802, N803
    return (_ok if STATE.free(devPtr) else cudaError_t.cudaErrorInvalidValue,)


def cudaFreeHost(ptr):  # noqa: N802
    return (_ok if STATE.free(ptr) else cudaError_t.cudaErrorInvalidValue,)


_DEVICE_SIDES = {
    cudaMemcpyKind.cudaMemcpyHostToDevice: (True, False),
    cudaMemcpyKind.cudaMemcpyDeviceToHost: (False, True),
    cudaMemcpyKind.cudaMemcpyDeviceToDevice: (True, True),
}


def _copy(dst, src, count, kind) -> None:
    """memmove, after checking that the device side(s) lie inside live allocations."""
    n = int(count)
    if n:
        dst_device, src_device = _DEVICE_SIDES.get(cudaMemcpyKind(kind), (False, False))
        if dst_device:
            STATE.region(int(dst), n)
        if src_device:
            STATE.region(int(src), n)
        ctypes.memmove(int(dst), int(src), n)


def cudaMemcpyAsync(dst, src, count, kind, stream):  # noqa: N802
    cudaMemcpyKind(kind)
    return (enqueue(stream, lambda: _copy(dst, src, count, kind)),)


def cudaMemcpy(dst, src, count, kind):  # noqa: N802
    _copy(dst, src, count, kind)
    return (_ok,)


# ------------------------------------------------------------------------------------------ streams, events
def cudaStreamCreateWithFlags(flags):  # noqa: N802
    if (err := _no_device()) is not None:
        return err, 0
    return _ok, _handle(_streams, None)


def cudaStreamDestroy(stream):  # noqa: N802
    return (_ok if _streams.pop(int(stream), "missing") != "missing" else cudaError_t.cudaErrorInvalidResourceHandle,)


def cudaStreamSynchronize(stream):  # noqa: N802
    if is_capturing(stream):
        raise StandinContractError("cudaStreamSynchronize on a stream that is being captured")
    return (_ok,)


def cudaEventCreate():  # noqa: N802
    return _ok, _handle(_events, None)


def cudaEventRecord(event, stream):  # noqa: N802
    def stamp():
        _events[int(event)] = time.perf_counter()

    return (enqueue(stream, stamp),)


def cudaEventSynchronize(event):  # noqa: N802
    return (_ok,)


def cudaEventElapsedTime(start, end):  # noqa: N802
    a, b = _events.get(int(start)), _events.get(int(end))
    if a is None or b is None:
        return cudaError_t.cudaErrorInvalidResourceHandle, 0.0
    return _ok, (b - a) * 1e3


def cudaEventDestroy(event):  # noqa: N802
    return (_ok if _events.pop(int(event), "missing") != "missing" else cudaError_t.cudaErrorInvalidResourceHandle,)


# ------------------------------------------------------------------------------------------ graphs
def cudaStreamBeginCapture(stream, mode):  # noqa: N802
    cudaStreamCaptureMode(mode)
    key = _stream_key(stream)
    if key == 0:
        return (cudaError_t.cudaErrorStreamCaptureUnsupported,)
    if key not in _streams:
        return (cudaError_t.cudaErrorInvalidResourceHandle,)
    if _streams[key] is not None:
        return (cudaError_t.cudaErrorIllegalState,)
    _streams[key] = []
    return (_ok,)


def cudaStreamEndCapture(stream):  # noqa: N802
    key = _stream_key(stream)
    work = _streams.get(key)
    if work is None:
        return cudaError_t.cudaErrorInvalidValue, None
    _streams[key] = None
    if STATE.capture_fails:
        return cudaError_t.cudaErrorStreamCaptureInvalidated, None
    return _ok, _handle(_graphs, list(work))


def cudaGraphInstantiate(graph, flags):  # noqa: N802
    work = _graphs.get(int(graph))
    if work is None:
        return cudaError_t.cudaErrorInvalidValue, None
    return _ok, _handle(_execs, list(work))


def cudaGraphLaunch(graphExec, stream):  # noqa: N802, N803
    work = _execs.get(int(graphExec))
    if work is None:
        return (cudaError_t.cudaErrorInvalidResourceHandle,)
    STATE.record("cudart", "cudaGraphLaunch")
    for item in work:
        err = enqueue(stream, item)
        if err != _ok:
            return (err,)
    return (_ok,)


def cudaGraphDestroy(graph):  # noqa: N802
    return (_ok if _graphs.pop(int(graph), None) is not None else cudaError_t.cudaErrorInvalidValue,)


def cudaGraphExecDestroy(graphExec):  # noqa: N802, N803
    return (_ok if _execs.pop(int(graphExec), None) is not None else cudaError_t.cudaErrorInvalidValue,)


def reset_handles() -> None:
    for table in (_streams, _graphs, _execs, _events):
        table.clear()
