"""Engine builds through the stand-in: plans, sidecars, reuse, refusals, audit, parser errors, None builds."""

from __future__ import annotations

import json

import numpy as np
import pytest
from standin.onnx_graphs import make_onnx

from gr00t_trt.base.errors import EngineError
from gr00t_trt.contract.graphs import TensorSpec as TensorEntry
from gr00t_trt.contract.manifest import GraphEntry, load_manifest
from gr00t_trt.engines.build import BuildOptions, build_engines, make_logger, network_from_onnx
from gr00t_trt.engines.cache import EngineKey, engine_key, require_loadable
from gr00t_trt.engines.device import probe_gpu
from gr00t_trt.engines.plan import read_plan_header

SMALL = ("state_encoder", "action_decoder")


def test_build_writes_plans_sidecars_and_reuses_them(standin_trt, tiny_export, tmp_path):
    seen = []
    out = tmp_path / "engines"
    report = build_engines(tiny_export, BuildOptions(out=out, only=SMALL), lambda g, s: seen.append((g, s)))
    assert [e.graph for e in report.engines] == list(SMALL) and not any(e.reused for e in report.engines)
    assert [s for g, s in seen if g == "state_encoder"][0] == "building"
    plan = out / "state_encoder.plan"
    assert read_plan_header(plan).version_text == "10.13.0.35"
    sidecar = json.loads((out / "state_encoder.plan.json").read_text())
    manifest = load_manifest(tiny_export)
    assert sidecar["key"]["compute_capability"] == "8.9" and sidecar["key"]["trt_version"] == "10.13.0.35"
    assert sidecar["key"]["precision"] == "fp32" and sidecar["profile"]["state"]["max"][0] == manifest.dynamic_dims["B"][2]
    assert sidecar["gpu_name"] == "Stand-in GPU" and sidecar["layer_precisions"]["fp32"] >= 1
    assert (out / "timing.cache").stat().st_size > 2
    assert not list(out.glob(".*.tmp"))
    calls = len(standin_trt.calls)
    again = build_engines(tiny_export, BuildOptions(out=out, only=SMALL))
    assert all(e.reused for e in again.engines)
    assert ("Builder", "build_serialized_network") not in standin_trt.calls[calls:]


def test_engine_runs_the_graph_it_was_built_from(standin_trt, tiny_export, tmp_path):
    import onnxruntime as ort
    import tensorrt as trt
    from cuda.bindings import runtime as cudart

    build_engines(tiny_export, BuildOptions(out=tmp_path, only=("state_encoder",)))
    logger = make_logger(trt)
    engine = trt.Runtime(logger).deserialize_cuda_engine((tmp_path / "state_encoder.plan").read_bytes())
    context = engine.create_execution_context()
    manifest = load_manifest(tiny_export)
    state = np.random.default_rng(0).standard_normal((2, 1, manifest.dims["Ds"])).astype(np.float32)
    ids = np.array([0, 1], np.int64)
    _, stream = cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking)
    out_shape = (2, 1, manifest.dims["C"])
    buffers = {}
    for name, array in (("state", state), ("embodiment_id", ids), ("state_features", np.zeros(out_shape, np.float32))):
        _, ptr = cudart.cudaMalloc(array.nbytes)
        cudart.cudaMemcpyAsync(ptr, array.ctypes.data, array.nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, stream)
        buffers[name] = ptr
    assert context.execute_async_v3(stream) is False  # addresses and shapes not set yet
    assert context.set_input_shape("state", state.shape) and context.set_input_shape("embodiment_id", ids.shape)
    assert tuple(context.get_tensor_shape("state_features")) == out_shape
    for name, ptr in buffers.items():
        context.set_tensor_address(name, ptr)
    assert context.execute_async_v3(stream)
    got = np.empty(out_shape, np.float32)
    cudart.cudaMemcpyAsync(got.ctypes.data, buffers["state_features"], got.nbytes,
                           cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream)
    ref = ort.InferenceSession(str(tiny_export / "state_encoder.onnx")).run(None, {"state": state, "embodiment_id": ids})[0]
    np.testing.assert_array_equal(got, ref)


def test_plan_for_another_gpu_or_tensorrt_is_refused_at_load_with_the_command(standin_trt, tiny_export, tmp_path):
    build_engines(tiny_export, BuildOptions(out=tmp_path, only=("state_encoder",)))
    manifest = load_manifest(tiny_export)
    entry = manifest.graph("state_encoder")
    import dataclasses

    from cuda.bindings import runtime as cudart
    key = engine_key(manifest, entry, probe_gpu(0, cudart), "10.13.0.35")
    assert require_loadable(tiny_export, tmp_path, "state_encoder", key) == tmp_path / "state_encoder.plan"
    other = dataclasses.replace(key, trt_version="11.4.0.106", compute_capability="11.0")
    with pytest.raises(EngineError, match=(
        r"cannot load the state_encoder engine: state_encoder.plan was built for compute capability 8.9 "
        r"\(this machine/export: 11.0\), TensorRT 10.13.0.35 \(this machine/export: 11.4.0.106\) — rebuild it: "
        rf"gr00t-trt build {tiny_export} --out {tmp_path} --only state_encoder")):
        require_loadable(tiny_export, tmp_path, "state_encoder", other)
    plan = tmp_path / "state_encoder.plan"
    plan.write_bytes(plan.read_bytes()[:-5])
    with pytest.raises(EngineError, match="does not match the sha256 in its sidecar"):
        require_loadable(tiny_export, tmp_path, "state_encoder", key)
    standin_trt.trt_version = "11.4.0.106"  # a TensorRT upgrade: the cache rebuilds instead of reusing
    rebuilt = build_engines(tiny_export, BuildOptions(out=tmp_path, only=("state_encoder",)))
    assert not rebuilt.engines[0].reused and read_plan_header(plan).version_text == "11.4.0.106"
    assert isinstance(EngineKey(**json.loads((tmp_path / "state_encoder.plan.json").read_text())["key"]), EngineKey)


def test_none_build_is_reported_with_the_logged_error(standin_trt, tiny_export, tmp_path):
    standin_trt.build_returns_none = True
    with pytest.raises(EngineError, match=r"TensorRT 10.13.0.35 failed to build the state_encoder engine: "
                                          r"Stand-in: out of memory while building \(forced\) — try a larger --workspace-gb"):
        build_engines(tiny_export, BuildOptions(out=tmp_path, only=("state_encoder",)))
    assert not (tmp_path / "state_encoder.plan").exists()


def test_parser_error_names_node_and_operator(standin_trt, tmp_path):
    import tensorrt as trt

    onnx_path = make_onnx(tmp_path / "bad.onnx", "bad")
    entry = GraphEntry("bad", "dit", "bad.onnx", "fp32", (TensorEntry("x", "float32", ("B", 8)),), ())
    logger = make_logger(trt)
    with pytest.raises(EngineError, match=r"could not parse bad.onnx: node 'fancy_node' \(operator FancyOp\): "
                                          r"No importer registered for op: FancyOp — re-export"):
        network_from_onnx(trt, trt.Builder(logger), logger, onnx_path, entry)


@pytest.mark.parametrize("kind", ["fp16", "fp8"])
def test_audit_fails_a_low_precision_gemm_built_fp32(standin_trt, tmp_path, kind):
    import tensorrt as trt

    from gr00t_trt.engines.build import audit_plan, config_for_profile, create_builder, plan_from_network
    from gr00t_trt.engines.profiles import GraphProfile, InputProfile

    onnx_path = make_onnx(tmp_path / f"{kind}.onnx", kind)
    entry = GraphEntry(kind, "dit", onnx_path.name, kind, (TensorEntry("x", "float32", ("B", 8)),), ())
    logger = make_logger(trt)
    builder = create_builder(trt, logger)
    profile = GraphProfile(kind, (InputProfile("x", (1, 8), (1, 8), (2, 8)),))

    def build() -> bytes:
        network, _ = network_from_onnx(trt, builder, logger, onnx_path, entry)
        config = config_for_profile(trt, builder, profile, BuildOptions(), b"")
        return plan_from_network(trt, builder, network, config, logger, kind)

    report = audit_plan(trt, logger, build(), kind, onnx_path)
    assert report.passed and report.summary() == {kind: 1}
    standin_trt.fp32_layers = {"gemm_node"}
    with pytest.raises(EngineError, match=rf"precision audit of {kind}: 1 GEMM/conv layer\(s\) built in fp32 .* "
                                          rf"\{{ForeignNode\[/fused_0/Cast\.\.\./fused_0/Add\]\}} \(Myelin: asked {kind}, built fp32\)"):
        audit_plan(trt, logger, build(), kind, onnx_path)


def test_no_gpu_is_one_line(standin_trt, tiny_export, tmp_path):
    standin_trt.device_count = 0
    with pytest.raises(EngineError, match=r"^no usable CUDA GPU — cudaGetDeviceCount returned cudaErrorNoDevice \(100\)"):
        build_engines(tiny_export, BuildOptions(out=tmp_path))
