"""The genuine TensorRT 10.3 / 10.13 / 11.4 and cuda-python modules load here and fail like a GPU-less box."""

from __future__ import annotations

from .harness import REAL_TRT, run_probe


def test_real_tensorrt_imports_and_cannot_create_objects(real_version, probe):
    label, dirs = real_version
    basics = probe(label, dirs, "basics")["basics"]
    assert basics["version"] == REAL_TRT[label].split("==")[1]
    assert basics["Builder"] == "TypeError: pybind11::init(): factory function returned nullptr"
    assert basics["Runtime"] == "TypeError: pybind11::init(): factory function returned nullptr"


def test_real_cuda_runtime_reports_no_device(cuda_python_dirs):
    basics = run_probe("basics", cuda=cuda_python_dirs)["basics"]
    name, code, count = basics["cudaGetDeviceCount"]
    assert name in ("cudaErrorInsufficientDriver", "cudaErrorNoDevice") and code in (35, 100)
    assert count is None or count == 0
    assert basics["cudaMallocHost"][1] != 0
