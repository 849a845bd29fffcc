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
    cudart.cudaStreamSynchronize(stream)
    out = standin.STATE.region(ptrs["state_features"], 4 * 32).view(np.float32)
    out[:] = 0
    assert cudart.cudaGraphLaunch(exec_, stream)[0] == cudart.cudaError_t.cudaSuccess
    assert np.abs(out).sum() == 0  # asynchronous: nothing ran yet
    cudart.cudaStreamSynchronize(stream)
    assert np.abs(out).sum() > 0


def test_shape_or_address_change_after_capture_fails_on_launch(context):
    _trt, cudart, ctx, stream, ptrs = context
    assert ctx.execute_async_v3(stream)
    exec_ = _capture(cudart, ctx, stream)
    cudart.cudaStreamSynchronize(stream)
    ctx.set_tensor_address("state", cudart.cudaMalloc(1 << 16)[1])
    cudart.cudaGraphLaunch(exec_, stream)
    with pytest.raises(standin.StandinContractError, match="after a shape or address change without re-capture"):
        cudart.cudaStreamSynchronize(stream)


def test_wrong_argument_types_are_rejected_like_pybind11(context):
    _trt, _cudart, ctx, _stream, _ = context
    with pytest.raises(TypeError, match="memory must be an int"):
        ctx.set_tensor_address("state", "0x10")


# ------------------------------------------------------------------------------------------ the adversary (issue 16)
def test_work_runs_only_at_synchronisation_and_events_are_not_ready_before(context):
    _trt, cudart, ctx, stream, ptrs = context
    out = standin.STATE.region(ptrs["state_features"], 4 * 32).view(np.float32)
    start, end = cudart.cudaEventCreate()[1], cudart.cudaEventCreate()[1]
    cudart.cudaEventRecord(start, stream)
    assert ctx.execute_async_v3(stream)
    cudart.cudaEventRecord(end, stream)
    assert np.abs(out).sum() == 0
    assert cudart.cudaEventElapsedTime(start, end)[0] == cudart.cudaError_t.cudaErrorNotReady
    with pytest.raises(standin.StandinContractError, match="cudaFree while 3 queued operation"):
        cudart.cudaFree(ptrs["state"])
    cudart.cudaEventSynchronize(end)
    assert np.abs(out).sum() > 0 and cudart.cudaEventElapsedTime(start, end)[0] == cudart.cudaError_t.cudaSuccess


def test_the_legacy_default_stream_is_refused(context):
    _trt, _cudart, ctx, _stream, _ = context
    with pytest.raises(standin.StandinContractError, match="legacy default stream 0"):
        ctx.execute_async_v3(0)


def test_pageable_copies_are_counted_and_fail_a_capture(context):
    _trt, cudart, _ctx, stream, ptrs = context
    pageable = np.ones(8, np.float32)
    kind = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
    cudart.cudaMemcpyAsync(ptrs["state"], pageable.ctypes.data, 32, kind, stream)
    assert standin.STATE.pageable_copies == 1
    pinned = cudart.cudaMallocHost(32)[1]
    cudart.cudaMemcpyAsync(ptrs["state"], pinned, 32, kind, stream)
    assert standin.STATE.pageable_copies == 1
    cudart.cudaStreamBeginCapture(stream, cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal)
    err, = cudart.cudaMemcpyAsync(ptrs["state"], pageable.ctypes.data, 32, kind, stream)
    assert err == cudart.cudaError_t.cudaErrorStreamCaptureUnsupported
    assert cudart.cudaStreamEndCapture(stream)[0] == cudart.cudaError_t.cudaErrorStreamCaptureInvalidated


@pytest.mark.parametrize("illegal", ["synchronize", "malloc", "set_input_shape", "set_tensor_address"])
def test_capture_illegal_calls_invalidate_the_capture(context, illegal):
    _trt, cudart, ctx, stream, ptrs = context
    assert ctx.execute_async_v3(stream)  # warm-up
    cudart.cudaStreamBeginCapture(stream, cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal)
    assert ctx.execute_async_v3(stream)
    {"synchronize": lambda: cudart.cudaStreamSynchronize(stream), "malloc": lambda: cudart.cudaMalloc(64),
     "set_input_shape": lambda: ctx.set_input_shape("state", (1, 1, 16)),
     "set_tensor_address": lambda: ctx.set_tensor_address("state", ptrs["state"])}[illegal]()
    assert cudart.cudaStreamEndCapture(stream)[0] == cudart.cudaError_t.cudaErrorStreamCaptureInvalidated


def test_the_current_device_is_per_thread(context):
    import threading

    _trt, cudart, ctx, stream, _ = context
    standin.STATE.device_count = 2
    seen = {}

    def other():
        seen["device"] = cudart.cudaGetDevice()[1]
        cudart.cudaSetDevice(1)
        seen["enqueue"] = ctx.execute_async_v3(stream)

    worker = threading.Thread(target=other)
    worker.start()
    worker.join()
    assert seen == {"device": 0, "enqueue": False}  # a new thread starts on device 0; the engine lives on device 0
    assert cudart.cudaGetDevice()[1] == 0


def test_enqueue_can_fail_and_plans_check_version_and_sm(context, tmp_path):
    trt, cudart, ctx, stream, _ = context
    standin.STATE.enqueue_fails = True
    assert ctx.execute_async_v3(stream) is False
    standin.STATE.enqueue_fails = False
    plan = ctx.engine.serialize()
    logger = make_logger(trt)
    standin.STATE.compute_capability = (8, 7)
    assert trt.Runtime(logger).deserialize_cuda_engine(plan) is None
    assert "incompatible device, expecting compute 8.9 got compute 8.7" in logger.errors[-1]
    standin.STATE.compute_capability = (8, 9)
    standin.STATE.trt_version = "10.3.0"
    assert trt.Runtime(logger).deserialize_cuda_engine(plan) is None
    assert "not compatible with this version of TensorRT" in logger.errors[-1]


def test_the_inspector_needs_a_context_for_formats(context):
    import json

    trt, _cudart, ctx, _stream, _ = context
    inspector = ctx.engine.create_engine_inspector()
    layers = json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON))["Layers"]
    assert {i["Format/Datatype"] for layer in layers for i in layer["Inputs"]} == {"N/A due to dynamic shapes"}
    inspector.execution_context = ctx
    layers = json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON))["Layers"]
    assert all(layer["Name"].startswith("{ForeignNode[") and "[ONNX Layer: " in layer["Metadata"] for layer in layers)
    assert "N/A due to dynamic shapes" not in json.dumps(layers)


def test_fp8_builds_fail_below_sm89(tmp_path):
    """Precision limits per SM: TensorRT has no fp8 kernels below compute capability 8.9."""
    from gr00t_trt.contract.graphs import TensorSpec
    from gr00t_trt.contract.manifest import GraphEntry
    from gr00t_trt.engines.build import BuildOptions, config_for_profile, create_builder, network_from_onnx
    from gr00t_trt.engines.profiles import GraphProfile, InputProfile
    from standin.onnx_graphs import make_onnx

    with standin.install() as state:
        import tensorrt as trt

        onnx_path = make_onnx(tmp_path / "fp8.onnx", "fp8")
        entry = GraphEntry("fp8", "dit", onnx_path.name, "fp8", (TensorSpec("x", "float32", ("B", 8)),), ())
        logger = make_logger(trt)
        builder = create_builder(trt, logger)
        profile = GraphProfile("fp8", (InputProfile("x", (1, 8), (1, 8), (2, 8)),))
        built = {}
        for sm in ((8, 9), (8, 7)):
            state.compute_capability = sm
            network, _ = network_from_onnx(trt, builder, logger, onnx_path, entry)
            built[sm] = builder.build_serialized_network(network, config_for_profile(trt, builder, profile, BuildOptions(), b""))
        assert built[(8, 9)] is not None and built[(8, 7)] is None
        assert "fp8 is not supported on this device" in logger.errors[-1]
