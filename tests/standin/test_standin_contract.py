"""The stand-in enforces the CUDA-graph and binding rules the TensorRT backend must follow."""

from __future__ import annotations

import numpy as np
import pytest

import standin
from gr00t_trt.engines.build import BuildOptions, build_engines, make_logger


@pytest.fixture
def context(tiny_export, tmp_path):
    with standin.install():
        import tensorrt as trt
        from cuda.bindings import runtime as cudart

        build_engines(tiny_export, BuildOptions(out=tmp_path, only=("state_encoder",)))
        engine = trt.Runtime(make_logger(trt)).deserialize_cuda_engine((tmp_path / "state_encoder.plan").read_bytes())
        ctx = engine.create_execution_context()
        ptrs = {}
        for name in ("state", "embodiment_id", "state_features"):
            ptrs[name] = cudart.cudaMalloc(1 << 16)[1]
            ctx.set_tensor_address(name, ptrs[name])
        ctx.set_input_shape("state", (1, 1, 16))
        ctx.set_input_shape("embodiment_id", (1,))
        np.copyto(standin.STATE.region(ptrs["embodiment_id"], 8).view(np.int64), 0)
        _, stream = cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking)
        yield trt, cudart, ctx, stream, ptrs


def _capture(cudart, ctx, stream):
    mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
    assert cudart.cudaStreamBeginCapture(stream, mode)[0] == cudart.cudaError_t.cudaSuccess
    assert ctx.execute_async_v3(stream)
    err, graph = cudart.cudaStreamEndCapture(stream)
    err2, exec_ = cudart.cudaGraphInstantiate(graph, 0)
    assert err == err2 == cudart.cudaError_t.cudaSuccess
    return exec_


def test_capture_on_default_stream_fails(context):
    _trt, cudart, _ctx, _stream, _ = context
    mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
    assert cudart.cudaStreamBeginCapture(0, mode)[0] == cudart.cudaError_t.cudaErrorStreamCaptureUnsupported


def test_capture_needs_a_warm_up_and_replays(context):
    _trt, cudart, ctx, stream, ptrs = context
    mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
    cudart.cudaStreamBeginCapture(stream, mode)
    with pytest.raises(standin.StandinContractError, match="captured before a warm-up enqueue"):
        ctx.execute_async_v3(stream)
    cudart.cudaStreamEndCapture(stream)
    assert ctx.execute_async_v3(stream)  # warm-up
    exec_ = _capture(cudart, ctx, stream)
    out = standin.STATE.region(ptrs["state_features"], 4 * 32).view(np.float32)
    out[:] = 0
    assert cudart.cudaGraphLaunch(exec_, stream)[0] == cudart.cudaError_t.cudaSuccess
    assert np.abs(out).sum() > 0


def test_shape_or_address_change_after_capture_fails_on_launch(context):
    _trt, cudart, ctx, stream, ptrs = context
    assert ctx.execute_async_v3(stream)
    exec_ = _capture(cudart, ctx, stream)
    ctx.set_tensor_address("state", cudart.cudaMalloc(1 << 16)[1])
    with pytest.raises(standin.StandinContractError, match="after a shape or address change without re-capture"):
        cudart.cudaGraphLaunch(exec_, stream)


def test_wrong_argument_types_are_rejected_like_pybind11(context):
    _trt, _cudart, ctx, _stream, _ = context
    with pytest.raises(TypeError, match="memory must be an int"):
        ctx.set_tensor_address("state", "0x10")
