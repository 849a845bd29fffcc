"""The stand-in and gr00t_trt's TensorRT/CUDA calls against the genuine modules (10.3, 10.13, 11.4)."""

from __future__ import annotations

from gr00t_trt.engines import build  # noqa: F401 - the walker reads the source, this checks it imports

from .conformance import collect_chains, doc_signatures
from .harness import REPO


def _chains():
    found = collect_chains(REPO / "gr00t_trt")
    return {k: sorted(list(c) for c in v) for k, v in found.items()}


def test_walker_finds_the_calls_the_build_makes():
    chains = _chains()
    for expected in (["NetworkDefinitionCreationFlag", "STRONGLY_TYPED"], ["ProfilingVerbosity", "DETAILED"],
                     ["MemoryPoolType", "WORKSPACE"], ["LayerInformationFormat", "JSON"], ["OnnxParser"], ["Builder"]):
        assert expected in chains["trt"]
    assert ["cudaGetDeviceCount"] in chains["cudart"]
    for expected in (["ExecutionContextAllocationStrategy", "USER_MANAGED"], ["TensorIOMode", "INPUT"]):
        assert expected in chains["trt"]  # the TensorRT backend's names
    for expected in (["cudaStreamCaptureMode", "cudaStreamCaptureModeThreadLocal"], ["cudaGraphLaunch"],
                     ["cudaHostAlloc"], ["cudaHostAllocMapped"], ["cudaMemcpyKind", "cudaMemcpyDeviceToDevice"]):
        assert expected in chains["cudart"]


def test_doc_signature_parser():
    doc = ("f(*args, **kwargs)\nOverloaded function.\n\n1. f(self: m.X, name: str, shape: tuple) -> bool\n\n"
           "2. f(self: m.X, a: int = <E.B: 0>) -> None\n")
    assert doc_signatures("f", doc) == [[("name", False), ("shape", False)], [("a", True)]]
    assert doc_signatures("cudaMemcpyAsync", "cudaMemcpyAsync(dst, src, size_t count, kind: cudaMemcpyKind, stream)\n") == [
        [("dst", False), ("src", False), ("count", False), ("kind", False), ("stream", False)]]


def test_every_name_gr00t_trt_reaches_resolves_on_the_real_module(real_version, probe):
    label, dirs = real_version
    result = probe(label, dirs, "resolve", _chains())["resolve"]
    assert "error" not in result, result
    assert result["trt"] == [], f"TensorRT {label} lacks {result['trt']}"
    assert result["cudart"] == [], f"cuda-bindings lacks {result['cudart']}"


def test_standin_matches_the_real_api(real_version, probe):
    label, dirs = real_version
    result = probe(label, dirs, "conformance")["conformance"]
    assert "error" not in result, result.get("error")
    assert result["trt"] == [], f"stand-in vs TensorRT {label}: {result['trt']}"
    assert result["cudart"] == [], f"stand-in vs cuda-bindings: {result['cudart']}"


def test_build_and_doctor_say_no_gpu_in_one_line_with_the_real_module(real_version, probe):
    label, dirs = real_version
    result = probe(label, dirs, "cli")["cli"]
    assert "error" not in result, result.get("error")
    version = {"10.3": "10.3.0", "10.13": "10.13.0.35", "11.4": "11.4.0.106"}[label]
    assert result["create_builder"] == (
        f"TensorRT {version} could not create a Builder (pybind11::init(): factory function returned nullptr) — no "
        "usable CUDA GPU or driver on this machine; build engines on the target device, or use backend='ort' here")
    assert result["logger_errors"] == ["probe"]
    doctor = result["doctor"]
    assert doctor["gpu"].startswith("no GPU — cudaGetDeviceCount returned cudaError")
    assert doctor["tensorrt"].startswith(f"{version} installed but unusable: no GPU (cudaGetDeviceCount returned")
    assert "\n" not in doctor["tensorrt"]
