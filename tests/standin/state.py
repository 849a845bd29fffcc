"""Knobs and shared memory of the stand-in (one machine: one GPU, one heap)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class StandinContractError(AssertionError):
    """The code under test broke a rule the real TensorRT/CUDA would break on silently or fatally."""


@dataclass
class StandinState:
    trt_version: str = "10.13.0.35"
    device_count: int = 1
    device_name: str = "Stand-in GPU"
    compute_capability: tuple[int, int] = (8, 9)
    total_memory: int = 16 << 30
    integrated: bool = False
    build_returns_none: bool = False
    #: cudaStreamEndCapture reports cudaErrorStreamCaptureInvalidated (an engine with uncapturable ops)
    capture_fails: bool = False
    #: execute_async_v3 logs an error and returns False (as TensorRT does, e.g. on an invalid tensor address)
    enqueue_fails: bool = False
    #: cudaMemcpyAsync calls whose host side was pageable (not pinned/mapped) memory
    pageable_copies: int = 0
    #: ONNX node names whose layer comes back fp32 whatever the graph asked ("*" = every GEMM)
    fp32_layers: set[str] = field(default_factory=set)
    #: ONNX operators the parser rejects (as TensorRT 10.13 rejects opset-23 Attention)
    unsupported_ops: set[str] = field(default_factory=lambda: {"Attention", "RMSNormalization"})
    #: allocations: address -> (numpy byte array keeping it alive, kind "device" | "host" | "mapped")
    heap: dict[int, tuple[np.ndarray, str]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)

    def record(self, owner: str, method: str) -> None:
        self.calls.append((owner, method))

    def allocate(self, size: int, kind: str) -> int:
        array = np.zeros(max(int(size), 1) + 256, dtype=np.uint8)
        address = array.ctypes.data
        address += (-address) % 256  # CUDA allocations are 256-byte aligned
        self.heap[address] = (array, kind)
        return address

    def find(self, address: int) -> str | None:
        """The kind of the live allocation holding ``address``, or None (pageable or foreign memory)."""
        address = int(address)
        for array, kind in self.heap.values():
            if array.ctypes.data <= address < array.ctypes.data + array.nbytes:
                return kind
        return None

    def free(self, address: int) -> bool:
        return self.heap.pop(int(address), None) is not None

    def region(self, address: int, nbytes: int) -> np.ndarray:
        """A writable uint8 view of ``nbytes`` at ``address``, which must lie inside one allocation."""
        address = int(address)
        for start, (array, _kind) in self.heap.items():
            end = array.ctypes.data + array.nbytes
            if start <= address and address + nbytes <= end:
                offset = address - array.ctypes.data
                return array[offset: offset + nbytes]
        raise StandinContractError(f"address 0x{address:x} (+{nbytes} bytes) is not inside any live allocation")


STATE = StandinState()


def reset() -> None:
    fresh = StandinState()
    STATE.__dict__.update(fresh.__dict__)
