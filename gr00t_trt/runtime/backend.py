"""The contract between the Pipeline and the engines that run the exported graphs.

A backend runs graphs; the Pipeline decides which graphs run, on which buffers, in which order. The
contract is shaped by the fastest backend we plan (TensorRT + CUDA graphs) so that every other backend
is a simplification of it, never the other way round:

* Lifecycle, as Polygraphy runners: ``activate()`` (create runtime, stream, allocators) → ``open()`` each
  graph once → allocate, bind, record (once per shape bucket) → ``launch`` / ``upload`` / ``download``
  many times → ``deactivate()`` frees everything the backend allocated. ``with backend:`` does both ends.
  The public methods live in this base class and do the checks (active? names, dtypes and static dims of
  every bound buffer and fed array); backends implement the ``*_impl`` hooks. A backend garbage-collected
  while active warns (ResourceWarning) and frees itself.
* Buffers are owned by the backend (``allocate``): host numpy arrays for ONNX Runtime CPU; device memory
  plus a pinned host mirror (or mapped zero-copy memory on integrated GPUs) for TensorRT. The Pipeline
  only ever touches ``Buffer.host`` of buffers it allocated with ``host=True``.
* Host↔device traffic is explicit: the Pipeline writes ``buffer.host`` then calls ``upload(buffer)``;
  it calls ``download(buffer)`` and reads ``buffer.host`` only after ``synchronize()``.
* A ``Binding`` is one (graph, shape bucket, occurrence): the N denoising steps bind the same graph N
  times, each with its own buffers. TensorRT realises each Binding as its own execution context created
  with user-managed device memory, all contexts of one engine sharing one activation block (safe: one
  Pipeline runs its bindings in stream order on one stream), input shapes and tensor addresses set once at
  bind time — so a launch sets nothing and a captured CUDA graph stays valid. Memory cost: one small
  context per binding (host-side state only) and one activation block per engine. ONNX Runtime realises
  each Binding as its own IOBinding.
* ``record(label, steps)`` turns a fixed sequence of Bindings and ``Copy`` steps into a ``Program``. A
  program's buffers, shapes and order never change after recording, so a backend may capture it as a whole
  (one CUDA graph per program and bucket: warm-up launch, capture, then replay). A ``Copy`` is a plain
  same-dtype memcpy: graphs declare their I/O dtypes and cast inside themselves, never between.
* ``launch``, ``upload``, ``download`` and ``mark`` are asynchronous and stream-ordered; the Pipeline calls
  ``synchronize()`` once per control step. Backends that run synchronously (ORT) simply return late.
* ``mark()`` records a timing point in stream order; ``elapsed_ms(a, b)`` is valid after ``synchronize()``
  (CUDA events on TensorRT, ``perf_counter`` where launches are synchronous).
* ``probe(folder, manifest, **options)`` (a classmethod) says whether the backend can run *this* export on
  *this* machine: ``None`` if it can, else the one-line reason — what ``backend="auto"`` asks.

``run_once`` is the slow debugging path (allocates, synchronises, checks every feed); it shares no
state with the hot path.
"""

from __future__ import annotations

import abc
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..base.errors import BackendError
from ..contract.graphs import TensorSpec, find_tensor
from ..contract.manifest import GraphEntry, Manifest


def numpy_dtype(name: str) -> np.dtype:
    """The numpy dtype of a manifest dtype name (bfloat16 through ml_dtypes, imported only if needed)."""
    if name == "bfloat16":
        from ..base.errors import require

        return np.dtype(require("ml_dtypes", "ml_dtypes", "bfloat16 tensors").bfloat16)
    try:
        return np.dtype(name)
    except TypeError:
        raise BackendError(f"unknown tensor dtype {name!r} in the manifest — expected a numpy dtype name") from None


@dataclass(frozen=True)
class GraphInfo:
    """A graph opened by a backend: its name and I/O in declaration order, with concrete dtypes and
    every static dim as a size (dynamic dims keep their names)."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def input(self, name: str) -> TensorSpec:
        try:
            return find_tensor(self.name, self.inputs, name)
        except KeyError as exc:
            raise BackendError(exc.args[0]) from None


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
    """One (graph, shape bucket, occurrence) with every input and output fixed to a buffer; launching it
    is one step of a Program (see the module docstring for what a backend makes of it)."""

    graph: str
    buffers: Mapping[str, Buffer]
    handle: Any = None


@dataclass(frozen=True, eq=False)
class Copy:
    """Device-side copy of ``count`` elements (default: all of ``src``) between flattened buffers of one
    dtype (a memcpy: graphs cast inside themselves, never between)."""

    src: Buffer
    dst: Buffer
    src_offset: int = 0
    dst_offset: int = 0
    count: int | None = None

    def __post_init__(self) -> None:
        if self.src.dtype != self.dst.dtype:
            raise BackendError(
                f"copy from {self.src.name!r} ({self.src.dtype}) to {self.dst.name!r} ({self.dst.dtype}) would "
                "convert dtypes — graphs must agree on the dtype of the values they exchange (re-export)"
            )
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

    #: short name reported in Policy.metadata and accepted by Policy.load ("ort", "trt", ...)
    name: str = "backend"

    def __init__(self) -> None:
        self._active = False
        self._infos: dict[str, GraphInfo] = {}

    @classmethod
    def probe(cls, folder: Path, manifest: Manifest, **options: Any) -> str | None:
        """None when this backend can run the export in ``folder`` on this machine, else why not."""
        return None

    # ----------------------------------------------------------------- lifecycle
    @property
    def is_active(self) -> bool:
        return self._active

    def activate(self) -> None:
        """Create the runtime resources (sessions' environment, stream, events)."""
        if not self._active:
            self.activate_impl()
            self._active = True

    def deactivate(self) -> None:
        """Free everything this backend allocated; opened graphs, buffers and programs become invalid."""
        if self._active:
            try:
                self.deactivate_impl()
            finally:
                self._infos.clear()
                self._active = False

    @abc.abstractmethod
    def activate_impl(self) -> None:
        """Hook: create the runtime resources."""

    @abc.abstractmethod
    def deactivate_impl(self) -> None:
        """Hook: free every resource the backend allocated."""

    def __enter__(self) -> Backend:
        self.activate()
        return self

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    def __del__(self) -> None:
        if getattr(self, "_active", False):
            warnings.warn(f"the {self.name} backend was garbage-collected while active — call deactivate() "
                          "(or Policy.close()) to free its memory deterministically", ResourceWarning, stacklevel=2)
            try:
                self.deactivate()
            except Exception:  # interpreter shutdown: nothing sensible left to do
                pass

    def _check_active(self) -> None:
        if not self._active:
            raise BackendError(f"the {self.name} backend is not active — call activate() or use it as a context manager")

    # ----------------------------------------------------------------- graphs
    def open(self, entry: GraphEntry, folder: Path) -> GraphInfo:
        """Load one graph of the export directory ``folder`` (the backend finds its own artefact: the
        ONNX file for ORT, the engine for TensorRT), checked against the manifest entry."""
        self._check_active()
        info = self.open_impl(entry, Path(folder))
        self._infos[entry.name] = info
        return info

    def describe(self, graph: str) -> GraphInfo:
        """The I/O of an opened graph."""
        if graph not in self._infos:
            raise BackendError(f"graph {graph!r} is not open — opened: {', '.join(self._infos) or 'none'}")
        return self._infos[graph]

    @abc.abstractmethod
    def open_impl(self, entry: GraphEntry, folder: Path) -> GraphInfo:
        """Hook: load the graph and return its I/O (refuse an artefact that disagrees with ``entry``)."""

    # ----------------------------------------------------------------- buffers and binding
    @abc.abstractmethod
    def allocate(self, name: str, shape: Sequence[int], dtype: np.dtype, *, host: bool) -> Buffer:
        """A new buffer; ``host=True`` also gives it a host mirror (pinned on GPUs) the Pipeline may use."""

    def bind(self, graph: str, buffers: Mapping[str, Buffer]) -> Binding:
        """Fix every input and output of ``graph`` to a buffer (shapes are the buffers' shapes)."""
        self._check_active()
        info = self.describe(graph)
        expected = {t.name for t in (*info.inputs, *info.outputs)}
        if set(buffers) != expected:
            raise BackendError(f"binding of graph {graph!r} names {sorted(buffers)}, expected exactly {sorted(expected)}")
        for what, tensors in (("input", info.inputs), ("output", info.outputs)):
            for spec in tensors:
                check_tensor(graph, spec, buffers[spec.name].shape, buffers[spec.name].dtype, what)
        return self.bind_impl(graph, info, buffers)

    @abc.abstractmethod
    def bind_impl(self, graph: str, info: GraphInfo, buffers: Mapping[str, Buffer]) -> Binding:
        """Hook: bind checked buffers (set shapes and addresses once)."""

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
    def run_once(self, graph: str, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one graph alone on host arrays and return fresh host arrays (allocates; for ``verify``)."""
        self._check_active()
        check_feeds(self.describe(graph), feeds)
        return self.run_once_impl(graph, feeds)

    @abc.abstractmethod
    def run_once_impl(self, graph: str, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Hook: run checked feeds."""


def check_tensor(graph: str, spec: TensorSpec, shape: Sequence[int], dtype: np.dtype, what: str = "input") -> None:
    """Refuse a tensor whose dtype, rank or static dims differ from the graph's declaration."""
    if np.dtype(dtype) != numpy_dtype(spec.dtype):
        raise BackendError(f"graph {graph!r} {what} {spec.name!r} has dtype {np.dtype(dtype)}, expected {spec.dtype}")
    if len(shape) != len(spec.dims) or any(
        isinstance(d, int) and d != s for d, s in zip(spec.dims, shape, strict=True)
    ):
        raise BackendError(
            f"graph {graph!r} {what} {spec.name!r} has shape {tuple(shape)}, expected {list(spec.dims)}"
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
