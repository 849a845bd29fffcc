"""The contract between the Pipeline and the engines that run the exported graphs.

A backend runs graphs; the Pipeline decides which graphs run, on which buffers, in which order. The
contract is shaped by the fastest backend we plan (TensorRT + CUDA graphs) so that every other backend
is a simplification of it, never the other way round:

* Lifecycle, as Polygraphy runners: ``activate()`` (create runtime, stream, allocators) → ``open()`` each
  graph once → allocate, bind, record (once per shape bucket) → ``launch`` / ``upload`` / ``download``
  many times → ``deactivate()`` frees everything the backend allocated. ``with backend:`` does both ends.
* Buffers are owned by the backend (``allocate``): host numpy arrays for ONNX Runtime CPU; device memory
  plus a pinned host mirror (or mapped zero-copy memory on integrated GPUs) for TensorRT. The Pipeline
  only ever touches ``Buffer.host`` of buffers it allocated with ``host=True``.
* Host↔device traffic is explicit: the Pipeline writes ``buffer.host`` then calls ``upload(buffer)``;
  it calls ``download(buffer)`` and reads ``buffer.host`` only after ``synchronize()``.
* ``bind(graph, buffers)`` fixes one graph's tensors to buffers (shapes come from the buffers), once per
  shape bucket. ``record(label, steps)`` turns a fixed sequence of bound graph launches and ``Copy``
  steps into a ``Program``. A program's buffers, shapes and order never change after recording, so a
  backend may capture it as a whole (one CUDA graph per program and bucket: warm-up launch, capture,
  then replay) — the Pipeline records the state encoder and the whole denoising loop as one program.
* ``launch``, ``upload``, ``download`` and ``mark`` are asynchronous and stream-ordered; the Pipeline calls
  ``synchronize()`` once per control step. Backends that run synchronously (ORT) simply return late.
* ``mark()`` records a timing point in stream order; ``elapsed_ms(a, b)`` is valid after ``synchronize()``
  (CUDA events on TensorRT, ``perf_counter`` where launches are synchronous).

``run_once`` is the slow debugging path (allocates, synchronises, checks every feed); it shares no
state with the hot path.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendError
from ..manifest import GraphEntry


def numpy_dtype(name: str) -> np.dtype:
    """The numpy dtype of a manifest dtype name (bfloat16 through ml_dtypes, imported only if needed)."""
    if name == "bfloat16":
        from ..errors import require

        return np.dtype(require("ml_dtypes", "ml_dtypes", "bfloat16 tensors").bfloat16)
    try:
        return np.dtype(name)
    except TypeError:
        raise BackendError(f"unknown tensor dtype {name!r} in the manifest — expected a numpy dtype name") from None


@dataclass(frozen=True)
class TensorInfo:
    """One graph tensor as the backend sees it; dynamic dims are names (str)."""

    name: str
    dtype: np.dtype
    shape: tuple[int | str, ...]


@dataclass(frozen=True)
class GraphInfo:
    """A graph opened by a backend: its name and I/O in declaration order."""

    name: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]

    def input(self, name: str) -> TensorInfo:
        for t in self.inputs:
            if t.name == name:
                return t
        raise BackendError(f"graph {self.name!r} has no input {name!r} — it has: {', '.join(t.name for t in self.inputs)}")


@dataclass(eq=False)
class Buffer:
    """A backend-owned tensor. ``host`` is a numpy array (None for device-only buffers); ``handle`` is the
    backend's private device memory (None when host memory is the device memory, as on ORT CPU)."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    host: np.ndarray | None
    handle: Any = None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass(eq=False)
class Binding:
    """One graph with every input and output fixed to a buffer; launching it is one step of a Program."""

    graph: str
    buffers: Mapping[str, Buffer]
    handle: Any = None


@dataclass(frozen=True, eq=False)
class Copy:
    """Device-side copy of ``count`` elements (default: all of ``src``) between flattened buffers,
    converting dtype when the two differ (e.g. an fp16 graph's output feeding an fp32 graph)."""

    src: Buffer
    dst: Buffer
    src_offset: int = 0
    dst_offset: int = 0
    count: int | None = None

    def __post_init__(self) -> None:
        n = self.src.size if self.count is None else self.count
        if self.src_offset + n > self.src.size or self.dst_offset + n > self.dst.size:
            raise BackendError(
                f"copy of {n} elements from {self.src.name!r} (size {self.src.size}, offset {self.src_offset}) "
                f"to {self.dst.name!r} (size {self.dst.size}, offset {self.dst_offset}) is out of bounds"
            )
        object.__setattr__(self, "count", n)


Step = Binding | Copy


@dataclass(eq=False)
class Program:
    """A recorded, fixed sequence of steps; the backend may replay it as one captured unit."""

    label: str
    steps: tuple[Step, ...]
    handle: Any = None
    launches: int = field(default=0)


class Backend(abc.ABC):
    """Runs exported graphs over buffers it owns (see the module docstring for the full contract)."""

    #: short name reported in Policy.metadata ("ort", "trt", ...)
    name: str = "backend"

    def __init__(self) -> None:
        self._active = False

    # ----------------------------------------------------------------- lifecycle
    @property
    def is_active(self) -> bool:
        return self._active

    def activate(self) -> None:
        """Create the runtime resources (sessions' environment, stream, events)."""
        self._active = True

    def deactivate(self) -> None:
        """Free everything this backend allocated; opened graphs, buffers and programs become invalid."""
        self._active = False

    def __enter__(self) -> Backend:
        if not self._active:
            self.activate()
        return self

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    def _check_active(self) -> None:
        if not self._active:
            raise BackendError(f"the {self.name} backend is not active — call activate() or use it as a context manager")

    # ----------------------------------------------------------------- graphs
    @abc.abstractmethod
    def open(self, entry: GraphEntry, folder: Path) -> GraphInfo:
        """Load one graph of the export directory ``folder`` (the backend finds its own artefact: the
        ONNX file for ORT, the engine for TensorRT) and check its I/O against the manifest entry."""

    @abc.abstractmethod
    def describe(self, graph: str) -> GraphInfo:
        """The I/O of an opened graph."""

    # ----------------------------------------------------------------- buffers and binding
    @abc.abstractmethod
    def allocate(self, name: str, shape: Sequence[int], dtype: np.dtype, *, host: bool) -> Buffer:
        """A new buffer; ``host=True`` also gives it a host mirror (pinned on GPUs) the Pipeline may use."""

    @abc.abstractmethod
    def bind(self, graph: str, buffers: Mapping[str, Buffer]) -> Binding:
        """Fix every input and output of ``graph`` to a buffer (shapes are the buffers' shapes)."""

    @abc.abstractmethod
    def record(self, label: str, steps: Sequence[Step]) -> Program:
        """A program of fixed steps; it may be captured and replayed as a whole."""

    @abc.abstractmethod
    def release(self, *objects: Buffer | Binding | Program) -> None:
        """Free buffers, bindings or programs before ``deactivate`` (e.g. when a bucket is evicted)."""

    # ----------------------------------------------------------------- asynchronous work
    @abc.abstractmethod
    def upload(self, buffer: Buffer) -> None:
        """Enqueue host → device copy of ``buffer.host`` (no-op where host memory is device memory)."""

    @abc.abstractmethod
    def download(self, buffer: Buffer) -> None:
        """Enqueue device → host copy into ``buffer.host``; read it only after ``synchronize()``."""

    @abc.abstractmethod
    def launch(self, program: Program) -> None:
        """Enqueue a program."""

    @abc.abstractmethod
    def mark(self) -> Any:
        """A timing point in stream order (read with ``elapsed_ms`` after ``synchronize``)."""

    @abc.abstractmethod
    def elapsed_ms(self, start: Any, end: Any) -> float:
        """Milliseconds between two marks."""

    @abc.abstractmethod
    def synchronize(self) -> None:
        """Wait for all enqueued work; once per control step on the hot path."""

    # ----------------------------------------------------------------- slow debugging path
    @abc.abstractmethod
    def run_once(self, graph: str, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one graph alone on host arrays and return fresh host arrays (allocates; for ``verify``)."""


def check_tensor(graph: str, spec: TensorInfo, shape: Sequence[int], dtype: np.dtype, what: str = "input") -> None:
    """Refuse a tensor whose dtype, rank or static dims differ from the graph's declaration."""
    if np.dtype(dtype) != spec.dtype:
        raise BackendError(f"graph {graph!r} {what} {spec.name!r} has dtype {np.dtype(dtype)}, expected {spec.dtype}")
    if len(shape) != len(spec.shape) or any(
        isinstance(d, int) and d != s for d, s in zip(spec.shape, shape, strict=True)
    ):
        raise BackendError(
            f"graph {graph!r} {what} {spec.name!r} has shape {tuple(shape)}, expected {list(spec.shape)}"
        )


def check_feeds(info: GraphInfo, feeds: Mapping[str, np.ndarray]) -> None:
    """Names, dtypes and static dims of a slow-path feed dict, with one-line errors."""
    expected = [t.name for t in info.inputs]
    missing = [n for n in expected if n not in feeds]
    extra = sorted(set(feeds) - set(expected))
    if missing or extra:
        raise BackendError(
            f"graph {info.name!r} got inputs missing {missing} and unexpected {extra} — expected: {', '.join(expected)}"
        )
    for spec in info.inputs:
        array = feeds[spec.name]
        if not isinstance(array, np.ndarray):
            raise BackendError(f"graph {info.name!r} input {spec.name!r} is a {type(array).__name__}, expected a numpy array")
        check_tensor(info.name, spec, array.shape, array.dtype)
