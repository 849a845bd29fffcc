"""ONNX Runtime backend: CPU by default, CUDA EP with I/O binding when onnxruntime-gpu sees a GPU.

On CPU the buffers are plain numpy arrays bound to the sessions by pointer (I/O binding), so a steady-state
control step allocates nothing: graphs read and write the Pipeline's buffers in place, uploads and
downloads are no-ops and launches are synchronous. The CUDA path (not testable without a GPU) keeps a
device OrtValue per buffer next to its host array and converts dtypes through the host; it exists for
convenience, the TensorRT backend is the fast GPU path.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..base.cpu import x86_without_vnni
from ..base.errors import BackendError, require
from ..contract.graphs import TensorSpec
from ..contract.manifest import GraphEntry, Manifest
from .backend import Backend, Binding, Buffer, Copy, GraphInfo, Program, Step

#: ONNX Runtime type strings → numpy dtype names
_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(bfloat16)": "bfloat16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(bool)": "bool",
    "tensor(uint8)": "uint8",
}

_RUN, _COPY = 0, 1

#: ONNX Runtime graph optimisers turned off in every session. GatherSliceToSplitFusion rewrites the DiT's
#: per-layer Gathers of the stacked cross-attention K/V (``cross_k[n]``) into one Split that copies all the
#: layers' K/V at the start of every denoising step (44 MB at full size, S = 224); left as Gathers, each
#: layer copies only its own slice right before it is used.
DISABLED_OPTIMIZERS = ("GatherSliceToSplitFusion",)


#: ONNX Runtime session config entry: exact int8 GEMMs on x86 CPUs without VNNI. There (AVX2, AVX-512
#: before VNNI) ORT's u8s8 GEMM sums pairs of products in int16 (pmaddubsw), which saturates on full-range
#: int8 weights — measured on the tiny DiT: output cosine 0.995 against 0.9998 unfused; the entry selects
#: an exact path. VNNI's VPDPBUSD accumulates in int32 and is exact already, and the entry would cost its
#: speed: one GEMM 256×2048×6144 int8 vs fp32 4.3-4.7× without it, 1.5-2.1× with it (AMD EPYC Zen 4, 2 vCPUs,
#: ``benchmarks/results/int8_full_cpu.md``). No effect on float graphs.
X64_QUANT_PRECISION = "session.x64quantprecision"


def optimization_level(ort: Any, precision: str) -> Any:
    """The graph optimisation level of a session: fp8 Q/DQ graphs run on the CPU only at ORT_ENABLE_BASIC
    (above it ONNX Runtime fuses them into kernels it does not have; tensorrt-notes §0.7); int8 graphs run
    at ORT_ENABLE_ALL, where DequantizeLinear → MatMul becomes the integer kernel MatMulIntegerToFloat."""
    level = ort.GraphOptimizationLevel
    return level.ORT_ENABLE_BASIC if precision == "fp8" else level.ORT_ENABLE_ALL


def cpu_session(model: str | Path | bytes, options: Any, providers: Sequence[Any] = ("CPUExecutionProvider",)) -> Any:
    """An InferenceSession of ``model`` (a file, or a serialised graph without external data: a check of a
    graph still in memory) with the project's disabled optimisers (the runtime, the export's checks and
    the benchmarks all build their sessions here, so what is checked is what runs)."""
    import onnxruntime as ort

    if x86_without_vnni():
        options.add_session_config_entry(X64_QUANT_PRECISION, "1")
    source = bytes(model) if isinstance(model, (bytes, bytearray, memoryview)) else str(model)
    return ort.InferenceSession(source, options, providers=list(providers),
                                disabled_optimizers=list(DISABLED_OPTIMIZERS))


def _reason(exc: BaseException) -> str:
    """ORT's message without its '[ONNXRuntimeError] : 7 : INVALID_PROTOBUF :' prefix, first line only."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if text.startswith("[ONNXRuntimeError]"):
        text = text.split(" : ", 3)[-1]
    return text


class OrtBackend(Backend):
    """Runs the ONNX graphs of an export directory with ONNX Runtime.

    device: "auto" (CUDA EP when onnxruntime-gpu can use a GPU, else CPU), "cpu" or "cuda".
    threads: intra-op threads of every session (default: all cores).
    profile_dir: write ONNX Runtime's per-node profile of every session there (``end_profiling()``).
    shared_threads: run every session on ONNX Runtime's one process-wide intra-op pool instead of a pool
    per session (8+ pools fighting over a few cores). Measured on the `small` preset, 2-core AMD EPYC:
    39.0 → 31.8 ms per control step, idle CPU after a call unchanged (0.03 s over 2 s). Opt-in, for a
    process that runs the policy (a robot stack, ``serve``): once set, ONNX Runtime requires *every* later
    session of the process to use that pool, so every later OrtBackend does (with its size), and other
    code creating ONNX Runtime sessions in the same process (export, verify) would be refused.
    """

    name = "ort"

    def __init__(self, *, device: str = "auto", threads: int | None = None, device_id: int = 0,
                 profile_dir: str | Path | None = None, shared_threads: bool = False) -> None:
        super().__init__()
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise BackendError(f"threads must be a positive integer, got {threads!r}")
        self.profile_dir = Path(profile_dir) if profile_dir is not None else None
        self.shared_threads = shared_threads
        self._on_shared_pool = False
        if device not in ("auto", "cpu", "cuda"):
            raise BackendError(f"unknown ONNX Runtime device {device!r} — expected auto, cpu or cuda")
        self.requested_device = device
        self.device = "cpu"
        self.threads = threads or os.cpu_count() or 1
        self.device_id = device_id
        self._ort: Any = None
        self._sessions: dict[str, Any] = {}

    @classmethod
    def probe(cls, folder: Path, manifest: Manifest, **options: Any) -> str | None:
        import importlib.util

        if importlib.util.find_spec("onnxruntime") is None:
            return "onnxruntime is not installed (pip install onnxruntime)"
        bf16 = sorted(name for name, g in manifest.graphs.items() if g.precision == "bf16")
        if bf16:
            return (f"its bf16 graphs ({', '.join(bf16)}) cannot run on ONNX Runtime CPU — build TensorRT engines "
                    "(`gr00t-trt build`), or check them on the CPU with `gr00t-trt verify` (PyTorch bf16 preflight)")
        return None

    # ----------------------------------------------------------------- lifecycle
    def activate_impl(self) -> None:
        self._ort = require("onnxruntime", "onnxruntime", "The ONNX Runtime backend")
        self.device = self._pick_device()
        if self.shared_threads and _SHARED_POOL["threads"] is None:
            self._ort.set_global_thread_pool_sizes(self.threads, 1)
            _SHARED_POOL["threads"] = self.threads
        self._on_shared_pool = _SHARED_POOL["threads"] is not None  # ONNX Runtime then allows nothing else
        if self._on_shared_pool:
            self.threads = _SHARED_POOL["threads"]

    def deactivate_impl(self) -> None:
        self._sessions.clear()

    def _pick_device(self) -> str:
        if self.requested_device == "cpu":
            return "cpu"
        usable = "CUDAExecutionProvider" in self._ort.get_available_providers()
        if usable:
            try:  # onnxruntime-gpu lists the CUDA EP even without a GPU; allocating tells the truth
                self._ort.OrtValue.ortvalue_from_shape_and_type([1], np.float32, "cuda", self.device_id)
            except Exception:
                usable = False
        if not usable and self.requested_device == "cuda":
            raise BackendError(
                "ONNX Runtime cannot use a CUDA GPU — expected onnxruntime-gpu and a visible GPU; "
                "use device='cpu' or install onnxruntime-gpu"
            )
        return "cuda" if usable else "cpu"

    def session_options(self, precision: str) -> Any:
        """CPU-friendly options (``optimization_level`` for the graph's precision)."""
        ort = self._ort
        options = ort.SessionOptions()
        if self._on_shared_pool:
            options.use_per_session_threads = False  # the process-wide pool (its size is set once)
        else:
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = optimization_level(ort, precision)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        if self.profile_dir is not None:
            options.enable_profiling = True
            options.profile_file_prefix = str(self.profile_dir / "ort")
        return options

    def end_profiling(self) -> dict[str, Path]:
        """Stop profiling; graph name → the Chrome-trace JSON ONNX Runtime wrote (see ``profile_dir``)."""
        if self.profile_dir is None:
            raise BackendError("profiling is off — create the backend with profile_dir=FOLDER")
        return {name: Path(session.end_profiling()) for name, session in self._sessions.items()}

    # ----------------------------------------------------------------- graphs
    def open_impl(self, entry: GraphEntry, folder: Path) -> GraphInfo:
        path = folder / entry.file
        if not path.is_file():
            raise BackendError(f"graph file {path} not found — re-run `gr00t-trt export`")
        providers: list[Any] = ["CPUExecutionProvider"]
        if self.device == "cuda":
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": self.device_id}))
        try:
            session = cpu_session(path, self.session_options(entry.precision), providers)
        except Exception as exc:
            raise BackendError(
                f"ONNX Runtime cannot load {entry.file}: {_reason(exc)} — re-export the graph"
            ) from None
        info = _graph_info(entry, session)
        self._sessions[entry.name] = session
        return info

    # ----------------------------------------------------------------- buffers and binding
    def allocate(self, name: str, shape: Sequence[int], dtype: np.dtype, *, host: bool) -> Buffer:
        self._check_active()
        shape = tuple(int(s) for s in shape)
        array = np.zeros(shape, dtype)  # on CPU the host array *is* the device memory, so always present
        handle = None
        if self.device == "cuda":
            handle = self._ort.OrtValue.ortvalue_from_numpy(array, "cuda", self.device_id)
        return Buffer(name, shape, np.dtype(dtype), array, handle)

    def bind_impl(self, graph: str, info: GraphInfo, buffers: Mapping[str, Buffer]) -> Binding:
        io = self._sessions[graph].io_binding()  # one IOBinding per Binding (graph, bucket, occurrence)
        for what, tensors in (("input", info.inputs), ("output", info.outputs)):
            for spec in tensors:
                buf = buffers[spec.name]
                if self.device == "cuda":
                    (io.bind_ortvalue_input if what == "input" else io.bind_ortvalue_output)(spec.name, buf.handle)
                elif what == "input":
                    io.bind_input(spec.name, "cpu", 0, buf.dtype, buf.shape, buf.host.ctypes.data)
                else:
                    io.bind_output(spec.name, "cpu", 0, buf.dtype, buf.shape, buf.host.ctypes.data)
        return Binding(graph, dict(buffers), io)

    def record(self, label: str, steps: Sequence[Step]) -> Program:
        ops: list[tuple[int, Any, Any]] = []
        for step in steps:
            if isinstance(step, Binding):
                ops.append((_RUN, self._sessions[step.graph], step))
            elif isinstance(step, Copy):
                ops.append((_COPY, step, _copy_views(step)))
            else:
                raise BackendError(f"program {label!r} has a step of type {type(step).__name__}, expected Binding or Copy")
        return Program(label, tuple(steps), tuple(ops))

    def release(self, *objects: Buffer | Binding | Program) -> None:
        for obj in objects:  # memory is garbage-collected once the Pipeline drops its references
            if isinstance(obj, Binding):
                obj.handle = None
            elif isinstance(obj, Program):
                obj.handle = None

    # ----------------------------------------------------------------- work (synchronous on ORT)
    def upload(self, buffer: Buffer) -> None:
        if buffer.handle is not None:
            buffer.handle.update_inplace(buffer.host)

    def download(self, buffer: Buffer) -> None:
        if buffer.handle is not None:
            np.copyto(buffer.host, buffer.handle.numpy())

    def launch(self, program: Program) -> None:
        ops = program.handle
        if ops is None:
            raise BackendError(f"program {program.label!r} was released")
        for kind, a, b in ops:
            if kind == _RUN:
                try:
                    a.run_with_iobinding(b.handle)
                except Exception as exc:
                    raise BackendError(f"ONNX Runtime failed running graph {b.graph!r}: {_reason(exc)}") from None
            else:
                if self.device == "cuda":
                    self.download(a.src)
                np.copyto(b[1], b[0])
                if self.device == "cuda":
                    self.upload(a.dst)
        program.launches += 1

    def mark(self) -> float:
        return time.perf_counter()

    def elapsed_ms(self, start: float, end: float) -> float:
        return (end - start) * 1e3

    def synchronize(self) -> None:
        """Nothing to wait for: ORT's run_with_iobinding returns when the graph is done."""

    # ----------------------------------------------------------------- slow debugging path
    def run_once_impl(self, graph: str, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            outputs = self._sessions[graph].run(None, dict(feeds))
        except Exception as exc:
            raise BackendError(f"ONNX Runtime failed running graph {graph!r}: {_reason(exc)}") from None
        names = [o.name for o in self._sessions[graph].get_outputs()]
        return dict(zip(names, outputs, strict=True))


#: threads of ONNX Runtime's process-wide intra-op pool, once a backend has set it (``shared_threads``)
_SHARED_POOL: dict[str, int | None] = {"threads": None}


def _copy_views(step: Copy) -> tuple[np.ndarray, np.ndarray]:
    """(src, dst) flat views of a Copy, computed once at record time so launches allocate nothing."""
    assert step.count is not None
    src = step.src.host.reshape(-1)[step.src_offset : step.src_offset + step.count]
    dst = step.dst.host.reshape(-1)[step.dst_offset : step.dst_offset + step.count]
    if not np.shares_memory(dst, step.dst.host):  # reshape of a contiguous array is a view
        raise BackendError(f"buffer {step.dst.name!r} is not contiguous")
    return src, dst


def _graph_info(entry: GraphEntry, session: Any) -> GraphInfo:
    """The manifest's I/O with the ONNX file's static sizes filled in; a file whose names or dtypes differ
    from the manifest (stale or foreign) is refused."""

    def merge(declared, actual, what) -> tuple[TensorSpec, ...]:
        shapes = {a.name: a.shape or None for a in actual}  # None: the file does not say the rank
        have = {a.name: _ORT_TYPES.get(a.type, a.type) for a in actual}
        want = {t.name: t.dtype for t in declared}
        wrong_rank = [t.name for t in declared if shapes.get(t.name) and len(shapes[t.name]) != len(t.dims)]
        if have != want or wrong_rank:
            raise BackendError(
                f"{entry.file} has {what} {have}, the manifest expects {want}"
                + (f" (rank differs for {', '.join(wrong_rank)})" if wrong_rank else "") + " — re-export the graph"
            )
        return tuple(
            TensorSpec(t.name, t.dtype, tuple(
                s if isinstance(s, int) else d for d, s in zip(t.dims, shapes[t.name] or t.dims, strict=True)))
            for t in declared
        )

    return GraphInfo(entry.name, merge(entry.inputs, session.get_inputs(), "inputs"),
                     merge(entry.outputs, session.get_outputs(), "outputs"))
