"""Stand-in of ``cuda.bindings.runtime``: the calls gr00t-trt makes, same names, arguments and return tuples.

Every function returns ``(cudaError_t, *values)`` like the real one. It is an adversary that behaves as a
GPU does where the code could get it wrong:

* work is asynchronous: copies, kernels (``execute_async_v3``), event records and graph launches queued on
  a stream run only when that stream is synchronised or an event recorded on it is waited for; events
  read before then are ``cudaErrorNotReady``; freeing memory while work is queued is a contract error;
* the legacy default stream (0) is refused; ``cudaMemcpyAsync`` with pageable host memory fails during
  capture and is counted (``STATE.pageable_copies``) outside it, where it runs synchronously as CUDA does;
* capture-illegal calls (synchronise, malloc/free) invalidate a capture: ``cudaStreamEndCapture`` then
  fails with ``cudaErrorStreamCaptureInvalidated``; a graph launch replays exactly what was captured;
* the current device is per host thread (``cudaSetDevice``); a stream belongs to the device current when
  it was created, and work enqueued on it from a thread whose current device differs fails.
"""

from __future__ import annotations

import ctypes
import threading
import time
from dataclasses import dataclass, field
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
#: functions of this module that are the stand-in's own helpers, not CUDA API (tests/trt_real skips them)
STANDIN_HELPERS = ("enqueue", "is_capturing", "reset_handles", "current_device", "invalidate_captures", "in_flight")


@dataclass
class _Stream:
    device: int
    pending: list = field(default_factory=list)  # queued work, run at synchronisation
    capture: list | None = None  # work recorded while capturing
    invalidated: bool = False  # a capture-illegal call happened during the capture


_streams: dict[int, _Stream] = {}
_graphs: dict[int, list] = {}
_execs: dict[int, list] = {}
_events: dict[int, float | None] = {}  # event -> time stamp once its record has run, else None
_event_streams: dict[int, int] = {}  # event -> stream it was last recorded on
_next = [0x5000]
_thread = threading.local()


def _handle(table: dict, value) -> int:
    _next[0] += 16
    table[_next[0]] = value
    return _next[0]


def _no_device():
    return None if STATE.device_count else cudaError_t.cudaErrorNoDevice


def _stream_key(stream) -> int:
    return int(stream or 0)


def current_device() -> int:
    return getattr(_thread, "device", 0)


def enqueue(stream, work) -> cudaError_t:
    """Queue ``work`` on ``stream`` (or record it if capturing); used by the tensorrt stand-in too."""
    key = _stream_key(stream)
    if key == 0:
        raise StandinContractError("work enqueued on the legacy default stream 0 (it serialises with every "
                                   "blocking stream and cannot be captured) — use the backend's created stream")
    entry = _streams.get(key)
    if entry is None:
        return cudaError_t.cudaErrorInvalidResourceHandle
    if entry.device != current_device():
        return cudaError_t.cudaErrorInvalidResourceHandle  # the stream belongs to another device
    if entry.capture is not None:
        entry.capture.append(work)
    else:
        entry.pending.append(work)
    return _ok


def is_capturing(stream) -> bool:
    entry = _streams.get(_stream_key(stream))
    return entry is not None and entry.capture is not None


def invalidate_captures(what: str) -> bool:
    """A capture-illegal call: every capturing stream's capture is invalidated; True if there was one."""
    capturing = [s for s in _streams.values() if s.capture is not None]
    for entry in capturing:
        entry.invalidated = True
    if capturing:
        STATE.record("cudart", f"capture invalidated by {what}")
    return bool(capturing)


def _drain(key: int) -> None:
    entry = _streams[key]
    while entry.pending:
        entry.pending.pop(0)()


def in_flight() -> int:
    return sum(len(s.pending) for s in _streams.values())


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
    _thread.device = int(device)
    return (_ok,)


def cudaGetDevice():  # noqa: N802
    if (err := _no_device()) is not None:
        return err, 0
    return _ok, current_device()


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
    if invalidate_captures(f"alloc:{kind}"):
        return cudaError_t.cudaErrorStreamCaptureUnsupported, 0
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


def _free(address, what: str):
    if invalidate_captures(what):
        return (cudaError_t.cudaErrorStreamCaptureUnsupported,)
    if in_flight():
        raise StandinContractError(f"{what} while {in_flight()} queued operation(s) have not run — synchronise "
                                   "before freeing memory that queued work may touch")
    return (_ok if STATE.free(address) else cudaError_t.cudaErrorInvalidValue,)


def cudaFree(devPtr):  # noqa: N802, N803
    return _free(devPtr, "cudaFree")


def cudaFreeHost(ptr):  # noqa: N802
    return _free(ptr, "cudaFreeHost")


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


def _pinned(address: int) -> bool:
    entry = STATE.find(int(address))
    return entry is not None and entry in ("host", "mapped")


def cudaMemcpyAsync(dst, src, count, kind, stream):  # noqa: N802
    kind = cudaMemcpyKind(kind)
    host = {cudaMemcpyKind.cudaMemcpyHostToDevice: src, cudaMemcpyKind.cudaMemcpyDeviceToHost: dst}.get(kind)
    if host is not None and int(count) and not _pinned(host):
        if is_capturing(stream):
            invalidate_captures("cudaMemcpyAsync from pageable memory")
            return (cudaError_t.cudaErrorStreamCaptureUnsupported,)
        STATE.pageable_copies += 1  # CUDA stages it synchronously: the stream's queued work runs first
        err = enqueue(stream, lambda: _copy(dst, src, count, kind))
        if err == _ok:
            _drain(_stream_key(stream))
        return (err,)
    return (enqueue(stream, lambda: _copy(dst, src, count, kind)),)


def cudaMemcpy(dst, src, count, kind):  # noqa: N802
    _copy(dst, src, count, kind)
    return (_ok,)


# ------------------------------------------------------------------------------------------ streams, events
def cudaStreamCreateWithFlags(flags):  # noqa: N802
    if (err := _no_device()) is not None:
        return err, 0
    return _ok, _handle(_streams, _Stream(current_device()))


def cudaStreamDestroy(stream):  # noqa: N802
    entry = _streams.get(int(stream))
    if entry is None:
        return (cudaError_t.cudaErrorInvalidResourceHandle,)
    _drain(int(stream))  # CUDA completes queued work before releasing the stream
    del _streams[int(stream)]
    return (_ok,)


def cudaStreamSynchronize(stream):  # noqa: N802
    key = _stream_key(stream)
    if key not in _streams:
        return (cudaError_t.cudaErrorInvalidResourceHandle,)
    if invalidate_captures("cudaStreamSynchronize"):
        return (cudaError_t.cudaErrorStreamCaptureUnsupported,)
    _drain(key)
    return (_ok,)


def cudaEventCreate():  # noqa: N802
    STATE.record("cudart", "cudaEventCreate")
    return _ok, _handle(_events, None)


def cudaEventRecord(event, stream):  # noqa: N802
    event = int(event)
    if event not in _events:
        return (cudaError_t.cudaErrorInvalidResourceHandle,)

    def stamp():
        _events[event] = time.perf_counter()

    err = enqueue(stream, stamp)
    if err == _ok and not is_capturing(stream):
        _events[event] = None
        _event_streams[event] = _stream_key(stream)
    return (err,)


def cudaEventSynchronize(event):  # noqa: N802
    key = _event_streams.get(int(event))
    if invalidate_captures("cudaEventSynchronize"):
        return (cudaError_t.cudaErrorStreamCaptureUnsupported,)
    if key in _streams:
        _drain(key)
    return (_ok,)


def cudaEventElapsedTime(start, end):  # noqa: N802
    if int(start) not in _events or int(end) not in _events:
        return cudaError_t.cudaErrorInvalidResourceHandle, 0.0
    a, b = _events[int(start)], _events[int(end)]
    if a is None or b is None:
        return cudaError_t.cudaErrorNotReady, 0.0  # recorded work has not run yet
    return _ok, (b - a) * 1e3


def cudaEventDestroy(event):  # noqa: N802
    _event_streams.pop(int(event), None)
    return (_ok if _events.pop(int(event), "missing") != "missing" else cudaError_t.cudaErrorInvalidResourceHandle,)


# ------------------------------------------------------------------------------------------ graphs
def cudaStreamBeginCapture(stream, mode):  # noqa: N802
    cudaStreamCaptureMode(mode)
    key = _stream_key(stream)
    if key == 0:
        return (cudaError_t.cudaErrorStreamCaptureUnsupported,)
    entry = _streams.get(key)
    if entry is None:
        return (cudaError_t.cudaErrorInvalidResourceHandle,)
    if entry.capture is not None:
        return (cudaError_t.cudaErrorIllegalState,)
    entry.capture, entry.invalidated = [], False
    return (_ok,)


def cudaStreamEndCapture(stream):  # noqa: N802
    entry = _streams.get(_stream_key(stream))
    if entry is None or entry.capture is None:
        return cudaError_t.cudaErrorInvalidValue, None
    work, entry.capture = entry.capture, None
    if entry.invalidated or STATE.capture_fails:
        entry.invalidated = False
        return cudaError_t.cudaErrorStreamCaptureInvalidated, None
    STATE.record("cudart", "graph captured")
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
    for table in (_streams, _graphs, _execs, _events, _event_streams):
        table.clear()
    _thread.__dict__.clear()
