"""OrtBackend: session options, load failures as one-line errors, I/O binding in place, feed checks."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from gr00t_trt.base.errors import BackendError
from gr00t_trt.contract.manifest import load_manifest
from gr00t_trt.runtime.backend import Copy
from gr00t_trt.runtime.ort_backend import OrtBackend


@pytest.fixture
def backend():
    with OrtBackend(device="cpu") as be:
        yield be


def test_session_options_follow_precision(backend):
    import onnxruntime as ort

    assert backend.session_options("fp8").graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options = backend.session_options("fp16")
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert options.intra_op_num_threads == backend.threads and options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_corrupt_graph_is_a_one_line_error_naming_the_file(fake_export, tmp_path, backend):
    folder = tmp_path / "export"
    shutil.copytree(fake_export.folder, folder)
    (folder / "dit.onnx").write_bytes(b"\x08\x07")  # a protobuf (ir_version 7) but no model: only ORT can tell
    manifest = load_manifest(folder, verify_files=False)
    with pytest.raises(BackendError, match=r"ONNX Runtime cannot load dit\.onnx: .*re-export") as info:
        backend.open(manifest.graph("dit"), folder)
    assert "\n" not in str(info.value)


def test_missing_graph_file(fake_export, tmp_path, backend):
    manifest = load_manifest(fake_export.folder)
    with pytest.raises(BackendError, match=r"graph file .*dit\.onnx not found"):
        backend.open(manifest.graph("dit"), tmp_path)


def test_binding_runs_in_place_and_copies_are_plain_memcpy(fake_export, backend):
    manifest = load_manifest(fake_export.folder)
    info = backend.open(manifest.graph("state_encoder"), fake_export.folder)
    state = backend.allocate("state", (1, 1, 5), np.float32, host=True)
    slot = backend.allocate("slot", (1,), np.int64, host=True)
    out = backend.allocate("out", (1, 1, 6), np.float32, host=True)
    tail = backend.allocate("tail", (4,), np.float32, host=True)
    binding = backend.bind(info.name, {"state": state, "embodiment_id": slot, "state_features": out})
    program = backend.record("p", [binding, Copy(out, tail, src_offset=2, count=4)])
    state.host[...] = 1.0
    backend.launch(program)
    backend.synchronize()
    expected = np.tanh(np.ones((1, 5), np.float32) @ fake_export.weights.ws[0])
    np.testing.assert_allclose(out.host[0], expected, rtol=1e-6)
    np.testing.assert_array_equal(tail.host, out.host.reshape(-1)[2:6])
    half = backend.allocate("half", (1, 1, 6), np.float16, host=True)
    with pytest.raises(BackendError, match=r"copy from 'out' \(float32\) to 'half' \(float16\) would convert dtypes"):
        Copy(out, half)


def test_a_backend_left_active_warns_and_frees_itself(fake_export):
    backend = OrtBackend(device="cpu")
    backend.activate()
    backend.open(load_manifest(fake_export.folder).graph("dit"), fake_export.folder)
    with pytest.warns(ResourceWarning, match="garbage-collected while active"):
        backend.__del__()
    assert not backend.is_active and not backend._sessions


def test_bind_refuses_wrong_buffers(fake_export, backend):
    manifest = load_manifest(fake_export.folder)
    backend.open(manifest.graph("state_encoder"), fake_export.folder)
    state = backend.allocate("state", (1, 1, 5), np.float16, host=True)
    slot = backend.allocate("slot", (1,), np.int64, host=True)
    out = backend.allocate("out", (1, 1, 6), np.float32, host=True)
    with pytest.raises(BackendError, match=r"input 'state' has dtype float16, expected float32"):
        backend.bind("state_encoder", {"state": state, "embodiment_id": slot, "state_features": out})
    with pytest.raises(BackendError, match=r"expected exactly"):
        backend.bind("state_encoder", {"state": state, "state_features": out})


def test_run_once_checks_feeds(fake_export, backend):
    manifest = load_manifest(fake_export.folder)
    backend.open(manifest.graph("state_encoder"), fake_export.folder)
    with pytest.raises(BackendError, match=r"input 'embodiment_id' has dtype int32, expected int64"):
        backend.run_once("state_encoder", {"state": np.zeros((1, 1, 5), np.float32),
                                           "embodiment_id": np.zeros(1, np.int32)})
    with pytest.raises(BackendError, match=r"missing \['embodiment_id'\]"):
        backend.run_once("state_encoder", {"state": np.zeros((1, 1, 5), np.float32)})
    with pytest.raises(BackendError, match=r"has shape \(1, 1, 4\), expected \['B', 1, 5\]"):
        backend.run_once("state_encoder", {"state": np.zeros((1, 1, 4), np.float32),
                                           "embodiment_id": np.zeros(1, np.int64)})


def test_inactive_backend_refuses_work(fake_export):
    backend = OrtBackend(device="cpu")
    manifest = load_manifest(fake_export.folder)
    with pytest.raises(BackendError, match="not active"):
        backend.open(manifest.graph("dit"), fake_export.folder)


def test_cuda_request_without_gpu_is_clear():
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu installed; this checks the CPU-only build")
    with pytest.raises(BackendError, match="cannot use a CUDA GPU"):
        OrtBackend(device="cuda").activate()
    backend = OrtBackend()  # auto falls back to CPU
    backend.activate()
    assert backend.device == "cpu"


def test_shared_thread_pool_gives_the_same_actions(fake_export):
    """Opt-in process-wide pool: run in a fresh interpreter (ONNX Runtime's global pool is per process and
    then required by every later session), same numbers as per-session pools."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import numpy as np
        from runtime_fakes import make_inputs, make_noise
        from gr00t_trt.contract.manifest import load_manifest
        from gr00t_trt.runtime import OrtBackend, Pipeline
        folder = {str(fake_export.folder)!r}
        layout = [[(4, 6), (8, 4)], [(8, 4)]]
        shared = Pipeline(load_manifest(folder), folder, OrtBackend(device="cpu", threads=2, shared_threads=True))
        got = shared.run(make_inputs(layout), make_noise(2)).copy()
        later = OrtBackend(device="cpu", threads=1)  # every later session must use the pool: it does
        again = Pipeline(load_manifest(folder), folder, later).run(make_inputs(layout), make_noise(2))
        assert later.threads == 2 and later._on_shared_pool
        np.testing.assert_array_equal(got, again)
        np.save(sys.argv[1], got)
    """)
    out = Path(fake_export.folder).parent / "shared.npy"
    subprocess.run([sys.executable, "-c", code, str(out)], check=True, capture_output=True, timeout=120)
    from runtime_fakes import make_inputs, make_noise

    from gr00t_trt.runtime import Pipeline

    with Pipeline(load_manifest(fake_export.folder), fake_export.folder, OrtBackend(device="cpu")) as pipe:
        expected = pipe.run(make_inputs([[(4, 6), (8, 4)], [(8, 4)]]), make_noise(2))
    np.testing.assert_allclose(np.load(out), expected, rtol=1e-6, atol=1e-6)


def test_a_cpu_session_opens_a_file_or_the_same_graph_as_bytes(tmp_path):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from gr00t_trt.runtime.ort_backend import cpu_session

    weight = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(3, 2), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], [weight])
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    path = tmp_path / "g.onnx"
    path.write_bytes(data)
    x = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    for model in (path, str(path), data, bytearray(data)):
        (y,) = cpu_session(model, ort.SessionOptions()).run(None, {"x": x})
        np.testing.assert_array_equal(y, [[16.0, 22.0]])


AVX2_ONLY = "processor\t: 0\nflags\t\t: fpu sse2 avx fma avx2 f16c\n"


@pytest.mark.parametrize(("machine", "cpuinfo", "expected"), [
    ("x86_64", AVX2_ONLY, True),  # pmaddubsw: the saturating u8s8 kernel
    ("x86_64", AVX2_ONLY.replace("avx2", "avx2 avx512f avx512bw"), True),  # AVX-512 before VNNI
    ("x86_64", AVX2_ONLY.replace("avx2", "avx2 avx512f avx512_vnni"), False),  # Zen 4, Cascade Lake on
    ("x86_64", AVX2_ONLY.replace("avx2", "avx2 avx_vnni"), False),  # Alder Lake's AVX-VNNI
    ("x86_64", "", True),  # flags unreadable: the cautious answer
    ("aarch64", "Features\t: fp asimd asimddp\n", False),  # Jetson: the entry is x86's only
])
def test_exact_int8_is_asked_for_only_on_x86_without_vnni(machine, cpuinfo, expected):
    from gr00t_trt.base.cpu import x86_without_vnni

    assert x86_without_vnni(machine, cpuinfo) is expected


@pytest.mark.parametrize("needed", [True, False])
def test_a_cpu_session_carries_the_exact_int8_entry_when_the_cpu_needs_it(monkeypatch, needed):
    import onnxruntime as ort

    from gr00t_trt.runtime import ort_backend

    monkeypatch.setattr(ort_backend, "x86_without_vnni", lambda: needed)
    monkeypatch.setattr(ort, "InferenceSession", lambda *args, **kwargs: None)
    options = ort.SessionOptions()
    ort_backend.cpu_session(b"", options)
    try:
        entry = options.get_session_config_entry(ort_backend.X64_QUANT_PRECISION)
    except Exception:  # ORT raises when the entry was never set
        entry = None
    assert entry == ("1" if needed else None)


def test_the_runtimes_int8_gemm_is_exact_on_this_cpu(tmp_path):
    """Full-range int8 weights times activations at the top of their range — the case AVX2's pmaddubsw
    saturates (two products of 255·127 overflow int16) — run fused on the integer kernel in the runtime's
    own session, equal the exact integer arithmetic. On a CPU without VNNI this holds only through the
    exact-path entry; with VNNI through the kernel itself."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from gr00t_trt.runtime.ort_backend import cpu_session, optimization_level

    rng = np.random.default_rng(0)
    k, n = 256, 64
    weight_q = rng.choice(np.array([-127, 127], np.int8), size=(k, n))
    weight_scale = rng.uniform(0.01, 0.02, n).astype(np.float32)
    x_scale = np.float32(1 / 127)
    inits = [numpy_helper.from_array(weight_q, "wq"), numpy_helper.from_array(weight_scale, "ws"),
             numpy_helper.from_array(np.zeros(n, np.int8), "wz"), numpy_helper.from_array(np.array(x_scale), "xs"),
             numpy_helper.from_array(np.array(0, np.int8), "xz")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
             helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], axis=1),
             helper.make_node("MatMul", ["xd", "w"], ["y"])]
    graph = helper.make_graph(nodes, "linear", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, n])], inits)
    path = tmp_path / "linear.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]).SerializeToString())
    options = ort.SessionOptions()
    options.graph_optimization_level = optimization_level(ort, "int8")
    options.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    # activations at ±1 (quantised to ±127) with signs matching the weights': every product is 127², the
    # largest the kernel meets; the integer sums then reach k·127² (an int16 sum saturates at 32767)
    x = (np.sign(weight_q[:, 0]).astype(np.float32)[None, :] * rng.choice([1.0, 0.99], size=(8, k))).astype(np.float32)
    (y,) = cpu_session(path, options).run(None, {"x": x})
    import onnx

    ops = {node.op_type for node in onnx.load(str(tmp_path / "optimised.onnx")).graph.node}
    assert "MatMulIntegerToFloat" in ops, f"the GEMM did not reach the integer kernel: {sorted(ops)}"
    xq = np.clip(np.rint(x / x_scale), -128, 127).astype(np.int64)
    exact = (xq @ weight_q.astype(np.int64)).astype(np.float64) * float(x_scale) * weight_scale
    np.testing.assert_allclose(y, exact, rtol=1e-5, atol=1e-4)
