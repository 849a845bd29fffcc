"""This CPU's own limits, measured, as a roofline device: so ``bench`` on ONNX Runtime CPU can say how close
each stage runs to what this machine can do, not only how it compares with the PyTorch reference.

Two rates, both measured with ONNX Runtime (the engine our CPU graphs run on) and the backend's thread
count, best of a few runs:
- the fp32 GEMM rate, on a square-ish product large enough to be compute-bound (what vision, the backbone
  and dit_context are bound by);
- the weight-streaming bandwidth: a one-row MatMul (a GEMV: two FLOPs per weight, so nothing but the
  weight traffic bounds it) against a weight matrix far larger than the caches, bytes of weight read per
  second (what the denoising steps are bound by). Measuring it at the steps' own 51 rows would fold their
  compute into the "limit" and flatter them.
Needs ``onnx`` to write the two one-node graphs (the export extra); returns None without it.
"""

from __future__ import annotations

import importlib.util
import tempfile
import time
from pathlib import Path

import numpy as np

from .devices import DeviceSpec

#: rows of the weight-streaming product: one (a GEMV), so that memory alone bounds it
STREAM_ROWS = 1


def _matmul_session(weight: np.ndarray, rows: int, threads: int, folder: Path):
    """An ONNX Runtime session computing x [rows, k] @ weight [k, n] (weight stored as an initializer)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    k, n = weight.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, n])],
        initializer=[numpy_helper.from_array(weight, "w")],
    )
    path = folder / f"matmul_{rows}x{k}x{n}.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def best_seconds(run, repeats: int) -> float:
    """Shortest wall time of ``repeats`` calls of ``run``, after one warm-up call."""
    run()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def measure_cpu_limits(threads: int, *, gemm: int = 1024, stream_k: int = 4096, stream_n: int = 8192,
                       repeats: int = 5) -> DeviceSpec | None:
    """A DeviceSpec of this CPU: measured weight-streaming GB/s and fp32 GEMM TFLOP/s (None without onnx)."""
    if importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxruntime") is None:
        return None
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="gr00t_cpu_limits_") as tmp:
        folder = Path(tmp)
        weight = rng.standard_normal((gemm, gemm), dtype=np.float32)
        session = _matmul_session(weight, gemm, threads, folder)
        x = rng.standard_normal((gemm, gemm), dtype=np.float32)
        gemm_s = best_seconds(lambda: session.run(None, {"x": x}), repeats)
        stream = rng.standard_normal((stream_k, stream_n), dtype=np.float32)  # 128 MB: far beyond the caches
        session = _matmul_session(stream, STREAM_ROWS, threads, folder)
        x = rng.standard_normal((STREAM_ROWS, stream_k), dtype=np.float32)
        stream_s = best_seconds(lambda: session.run(None, {"x": x}), repeats)
    tflops = 2.0 * gemm**3 / gemm_s / 1e12
    gbs = stream.nbytes / stream_s / 1e9
    return DeviceSpec("cpu", f"this CPU, measured ({threads} threads: fp32 GEMM {tflops * 1e3:.0f} GFLOP/s, "
                      f"weight streaming {gbs:.1f} GB/s)", gbs, {"fp32": tflops})
