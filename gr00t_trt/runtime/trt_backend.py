"""TensorRT backend: engines from ``gr00t-trt build``, cuda-python memory, one stream, CUDA graphs.

* ``open`` loads a graph's plan only if its sidecar matches this GPU, TensorRT, precision, ONNX and
  profile (else one line with the exact rebuild command) and its header was written by this TensorRT.
  The plan is memory-mapped for deserialisation: no second copy in the DRAM a Jetson shares with the GPU.
* Buffers: device memory plus a pinned host mirror, allocated once per shape bucket; on integrated GPUs
  (Jetson) buffers the Pipeline touches are mapped host memory, so uploads and downloads are no-ops.
* A ``Binding`` is one execution context (USER_MANAGED) sharing its engine's single activation block;
  input shapes and tensor addresses are set once, at bind time. Safe because a Pipeline runs its
  bindings one after another on one stream.
* A ``Program`` is enqueued as is on its first launch (the warm-up TensorRT needs before capture), then
  captured once as one CUDA graph and replayed; if capture fails the program keeps plain enqueues and
  the reason is logged once. Shapes and addresses never change inside a program (new bucket → new program).
  A False from ``execute_async_v3`` is an error naming TensorRT's logged message; releasing a program
  (bucket eviction) releases its bindings' execution contexts too.
* The CUDA device is current per host thread: every call that allocates or enqueues makes it current on
  the calling thread first (``get_action`` from a server thread with ``device_id`` ≠ 0).
* ``mark``/``elapsed_ms`` are CUDA events; ``synchronize`` is the one host wait per control step.
"""

from __future__ import annotations

import logging
import mmap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..base.errors import BackendError, Gr00tTrtError
from ..contract.graphs import TensorSpec
from ..contract.manifest import GraphEntry, Manifest
from ..engines.cache import default_engine_dir, engine_key, plan_path, rebuild_command, reuse_problem
from ..engines.device import GpuInfo, load_cudart, load_tensorrt, probe_gpu
from ._cuda import Cuda, Memory, host_view
from .backend import Backend, Binding, Buffer, Copy, GraphInfo, Program, Step, numpy_dtype

log = logging.getLogger(__name__)

#: TensorRT DataType member name -> numpy dtype name
_TRT_DTYPES = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT8": "int8", "INT32": "int32",
               "INT64": "int64", "BOOL": "bool", "UINT8": "uint8", "FP8": "float8_e4m3fn"}


@dataclass(eq=False)
class _Engine:
    engine: Any
    activation: Memory | None = None


@dataclass(eq=False)
class _Captured:
    """How a program runs: its enqueue ops, and its CUDA graph once captured."""

    ops: tuple[tuple[str, Any], ...]
    launches: int = 0
    graph: Any = None
    graph_exec: Any = None
    capture_failed: str | None = None


@dataclass(eq=False)
class _Events:
    pool: list[Any] = field(default_factory=list)
    next: int = 0


class TrtBackend(Backend):
    """Runs the TensorRT engines built for an export.

    engine_dir: the engine folder (default: EXPORT/engines/sm<cc>-trt<version>); device_id: CUDA device;
    cuda_graphs: capture each program as a CUDA graph after its warm-up launch.
    """

    name = "trt"

    def __init__(self, *, engine_dir: str | Path | None = None, device_id: int = 0, cuda_graphs: bool = True) -> None:
        super().__init__()
        self.engine_dir = Path(engine_dir) if engine_dir else None
        self.device_id = device_id
        self.cuda_graphs = cuda_graphs
        self.gpu: GpuInfo | None = None
        self._trt: Any = None
        self._cuda: Cuda | None = None
        self._engines: dict[str, _Engine] = {}
        self._memory: set[Memory] = set()
        self._contexts: set[Binding] = set()
        self._programs: set[Program] = set()
        self._events = _Events()

    @classmethod
    def probe(cls, folder: Path, manifest: Manifest, *, engine_dir: str | Path | None = None, device_id: int = 0,
              cuda_graphs: bool = True) -> str | None:
        """None when engines for this GPU and TensorRT exist for every graph; else the first reason."""
        try:
            trt = load_tensorrt()
            gpu = probe_gpu(device_id, load_cudart())
        except Gr00tTrtError as exc:
            return str(exc).split(" — ")[0] + (" — " + str(exc).split(" — ")[1] if " — " in str(exc) else "")
        folder = Path(folder)
        engines = Path(engine_dir) if engine_dir else default_engine_dir(folder, gpu, trt.__version__)
        for entry in manifest.graphs.values():
            problem = reuse_problem(plan_path(engines, entry.name), engine_key(manifest, entry, gpu, trt.__version__))
            if problem is not None:
                return f"{problem} — build engines with: {rebuild_command(folder, engines)}"
        return None

    # ----------------------------------------------------------------- lifecycle
    def activate_impl(self) -> None:
        from ..engines.build import make_logger

        self._trt = load_tensorrt()
        cudart = load_cudart()
        self.gpu = probe_gpu(self.device_id, cudart)
        self._logger = make_logger(self._trt)
        try:
            self._runtime = self._trt.Runtime(self._logger)
        except TypeError as exc:
            raise BackendError(f"TensorRT could not create a Runtime ({exc}) — no usable GPU; use backend='ort'") from None
        self._cuda = Cuda(cudart, self.device_id)

    def deactivate_impl(self) -> None:
        """Teardown in dependency order: graphs, contexts, engines, memory, events, stream."""
        cuda = self._cuda
        for program in list(self._programs):
            self._release_program(program)
        for binding in list(self._contexts):
            binding.handle = None
        self._contexts.clear()
        self._engines.clear()
        if cuda is not None:
            cuda.use_device()
            try:
                cuda.synchronize()
            finally:
                for memory in list(self._memory):
                    cuda.free(memory)
                self._memory.clear()
                for event in self._events.pool:
                    cuda.destroy_event(event)
                self._events = _Events()
                cuda.close()
        self._cuda = None

    # ----------------------------------------------------------------- graphs
    def open_impl(self, entry: GraphEntry, folder: Path) -> GraphInfo:
        from ..engines.cache import require_loadable

        trt = self._trt
        engines = self.engine_dir or default_engine_dir(folder, self.gpu, trt.__version__)
        from ..contract.manifest import load_manifest

        manifest = load_manifest(folder, verify_files=False)
        plan = require_loadable(folder, engines, entry.name, engine_key(manifest, entry, self.gpu, trt.__version__))
        self._cuda.use_device()
        with open(plan, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            engine = self._runtime.deserialize_cuda_engine(data)
        if engine is None:
            errors = " | ".join(self._logger.errors[-2:]) or "no error was logged"
            raise BackendError(f"TensorRT could not load {plan}: {errors} — rebuild it: {rebuild_command(folder, engines, [entry.name])}")
        info = _graph_info(trt, entry, engine, plan)
        self._engines[entry.name] = _Engine(engine)
        return info

    # ----------------------------------------------------------------- buffers and binding
    def allocate(self, name: str, shape: Sequence[int], dtype: np.dtype, *, host: bool) -> Buffer:
        self._check_active()
        self._cuda.use_device()
        shape = tuple(int(s) for s in shape)
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        memory = self._cuda.alloc(nbytes, host=host, mapped=bool(host and self.gpu.integrated))
        self._memory.add(memory)
        array = host_view(memory.host, shape, dtype) if memory.host is not None else None
        return Buffer(name, shape, dtype, array, memory)

    def bind_impl(self, graph: str, info: GraphInfo, buffers: Mapping[str, Buffer]) -> Binding:
        trt = self._trt
        self._cuda.use_device()
        slot = self._engines[graph]
        engine = slot.engine
        if slot.activation is None:  # one activation block per engine, shared by all its contexts
            slot.activation = self._cuda.alloc(int(engine.device_memory_size_v2), host=False, mapped=False)
            self._memory.add(slot.activation)
        context = engine.create_execution_context(trt.ExecutionContextAllocationStrategy.USER_MANAGED)
        context.set_device_memory(slot.activation.device, slot.activation.nbytes)
        for spec in info.inputs:
            shape = buffers[spec.name].shape
            if not context.set_input_shape(spec.name, shape):
                low, _, high = engine.get_tensor_profile_shape(spec.name, 0)
                raise BackendError(
                    f"graph {graph!r} input {spec.name!r} shape {shape} is outside the engine's profile "
                    f"{tuple(low)}..{tuple(high)} — rebuild with wider bounds (re-export with larger limits)"
                )
        for spec in (*info.inputs, *info.outputs):
            if not context.set_tensor_address(spec.name, buffers[spec.name].handle.device):
                raise BackendError(f"TensorRT refused the address of {graph!r} tensor {spec.name!r}")
        missing = context.infer_shapes()
        if missing:
            raise BackendError(f"graph {graph!r}: TensorRT cannot infer shapes, unspecified: {', '.join(missing)}")
        for spec in info.outputs:
            got = tuple(context.get_tensor_shape(spec.name))
            if got != buffers[spec.name].shape:
                raise BackendError(f"graph {graph!r} output {spec.name!r} is {got} for these inputs, "
                                   f"but its buffer is {buffers[spec.name].shape}")
        binding = Binding(graph, dict(buffers), context)
        self._contexts.add(binding)
        return binding

    def record(self, label: str, steps: Sequence[Step]) -> Program:
        ops: list[tuple[str, Any]] = []
        for step in steps:
            if isinstance(step, Binding):
                ops.append(("run", step))
            elif isinstance(step, Copy):
                size = step.src.dtype.itemsize
                ops.append(("copy", (step.dst.handle.device + step.dst_offset * size,
                                     step.src.handle.device + step.src_offset * size, step.count * size)))
            else:
                raise BackendError(f"program {label!r} has a step of type {type(step).__name__}, expected Binding or Copy")
        program = Program(label, tuple(steps), _Captured(tuple(ops)))
        self._programs.add(program)
        return program

    def release(self, *objects: Buffer | Binding | Program) -> None:
        if self._cuda is not None:
            self._cuda.use_device()
        for obj in objects:
            if isinstance(obj, Program):
                self._release_program(obj)
            elif isinstance(obj, Binding):
                obj.handle = None
                self._contexts.discard(obj)
            elif isinstance(obj, Buffer) and obj.handle in self._memory:
                self._cuda.synchronize()  # never free memory queued work may still touch
                self._cuda.free(obj.handle)
                self._memory.discard(obj.handle)
                obj.handle, obj.host = None, None

    def _release_program(self, program: Program) -> None:
        """Destroy the program's CUDA graph and its bindings' execution contexts (it owns its bindings)."""
        state = program.handle
        if isinstance(state, _Captured) and self._cuda is not None:
            self._cuda.destroy_graph(state.graph, state.graph_exec)
        program.handle = None
        self._programs.discard(program)
        for step in program.steps:
            if isinstance(step, Binding):
                step.handle = None
                self._contexts.discard(step)

    # ----------------------------------------------------------------- asynchronous work
    def upload(self, buffer: Buffer) -> None:
        memory: Memory = buffer.handle
        self._cuda.use_device()
        if not memory.mapped:
            self._cuda.copy(memory.device, memory.host, memory.nbytes, "htod")

    def download(self, buffer: Buffer) -> None:
        memory: Memory = buffer.handle
        self._cuda.use_device()
        if not memory.mapped:
            self._cuda.copy(memory.host, memory.device, memory.nbytes, "dtoh")

    def launch(self, program: Program) -> None:
        state = program.handle
        if state is None:
            raise BackendError(f"program {program.label!r} was released")
        self._cuda.use_device()
        if state.graph_exec is not None:
            self._cuda.launch_graph(state.graph_exec)
        elif self.cuda_graphs and state.launches > 0 and state.capture_failed is None:
            self._capture(program, state)
        else:
            self._enqueue(program, state)
        state.launches += 1
        program.launches += 1

    def _enqueue(self, program: Program, state: _Captured) -> None:
        """Enqueue the program's steps; a False from ``execute_async_v3`` raises with TensorRT's logged error."""
        cuda = self._cuda
        for kind, op in state.ops:
            if kind == "run":
                if not op.handle.execute_async_v3(cuda.stream):
                    raise BackendError(f"TensorRT failed to enqueue graph {op.graph!r} of program {program.label!r}: "
                                       f"{' | '.join(self._logger.errors[-2:]) or 'no error was logged'}")
            else:
                cuda.copy(*op, "dtod")

    def _capture(self, program: Program, state: _Captured) -> None:
        """Capture the (already warmed-up) program as one CUDA graph, then launch it; fall back on failure.

        The capture always ends (try/finally), so an exception never leaves the stream capturing, and the
        graph of a failed capture is destroyed."""
        cuda = self._cuda
        cuda.synchronize()
        cuda.begin_capture()
        problem: str | None = "interrupted"
        try:
            self._enqueue(program, state)
            problem = None
        except BackendError as exc:
            problem = str(exc)
            raise
        finally:
            graph, ended = cuda.end_capture()
            problem = problem or ended
            if problem is not None:
                cuda.destroy_graph(graph, None)
                state.capture_failed = problem
        if problem is None:
            try:
                state.graph, state.graph_exec = graph, cuda.instantiate(graph)
            except BackendError as exc:
                cuda.destroy_graph(graph, None)
                state.capture_failed = problem = str(exc)
            else:
                cuda.launch_graph(state.graph_exec)
                return
        log.warning("CUDA graph capture of program %r failed (%s); it runs as plain enqueues", program.label, problem)
        self._enqueue(program, state)

    def mark(self) -> Any:
        self._cuda.use_device()
        events = self._events
        if events.next == len(events.pool):
            events.pool.append(self._cuda.event())
        event = events.pool[events.next]
        events.next += 1
        self._cuda.record(event)
        return event

    def elapsed_ms(self, start: Any, end: Any) -> float:
        return self._cuda.elapsed_ms(start, end)

    def synchronize(self) -> None:
        self._cuda.use_device()
        self._cuda.synchronize()
        self._events.next = 0  # events are reused next control step (read them before the next mark)

    # ----------------------------------------------------------------- slow debugging path
    def run_once_impl(self, graph: str, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        info = self.describe(graph)
        engine = self._engines[graph].engine
        probe = engine.create_execution_context(self._trt.ExecutionContextAllocationStrategy.USER_MANAGED)
        for spec in info.inputs:
            probe.set_input_shape(spec.name, feeds[spec.name].shape)
        buffers = {spec.name: self.allocate(spec.name, feeds[spec.name].shape, feeds[spec.name].dtype, host=True)
                   for spec in info.inputs}
        for spec in info.outputs:
            buffers[spec.name] = self.allocate(spec.name, tuple(probe.get_tensor_shape(spec.name)),
                                               numpy_dtype(spec.dtype), host=True)
        binding = program = None
        try:
            binding = self.bind(graph, buffers)
            for spec in info.inputs:
                np.copyto(buffers[spec.name].host, feeds[spec.name])
                self.upload(buffers[spec.name])
            state = _Captured((("run", binding),))
            self._enqueue(Program(graph, (binding,), state), state)
            for spec in info.outputs:
                self.download(buffers[spec.name])
            self.synchronize()
            return {spec.name: buffers[spec.name].host.copy() for spec in info.outputs}
        finally:
            self.release(*(x for x in (program, binding) if x is not None), *buffers.values())


def _graph_info(trt: Any, entry: GraphEntry, engine: Any, plan: Path) -> GraphInfo:
    """The manifest's I/O with the engine's static sizes; an engine whose I/O differs is refused."""
    names = {engine.get_tensor_name(i) for i in range(engine.num_io_tensors)}

    def merge(declared: tuple[TensorSpec, ...], mode: Any) -> tuple[TensorSpec, ...]:
        out = []
        for t in declared:
            if t.name not in names or engine.get_tensor_mode(t.name) != mode:
                raise BackendError(f"engine {plan.name} has no {mode.name.lower()} {t.name!r} — rebuild it")
            dtype = _TRT_DTYPES.get(engine.get_tensor_dtype(t.name).name, "?")
            if dtype != t.dtype:
                raise BackendError(f"engine {plan.name} tensor {t.name!r} is {dtype}, the manifest says {t.dtype} — rebuild it")
            shape = tuple(engine.get_tensor_shape(t.name))
            if len(shape) != len(t.dims):
                raise BackendError(f"engine {plan.name} tensor {t.name!r} has rank {len(shape)}, expected {len(t.dims)}")
            out.append(TensorSpec(t.name, t.dtype, tuple(s if s >= 0 else d for d, s in zip(t.dims, shape, strict=True))))
        return tuple(out)

    return GraphInfo(entry.name, merge(entry.inputs, trt.TensorIOMode.INPUT), merge(entry.outputs, trt.TensorIOMode.OUTPUT))
