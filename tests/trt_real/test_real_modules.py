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


def test_our_plan_version_check_accepts_what_each_real_module_reports(real_version, probe):
    """Issue 16 defect 1: the real 10.3 wheel says "10.3.0" while its plans' headers hold 10.3.0.26."""
    from gr00t_trt.engines.plan import PlanHeader, same_tensorrt

    label, dirs = real_version
    version = probe(label, dirs, "basics")["basics"]["version"]
    parts = tuple(int(p) for p in version.split("."))
    header = PlanHeader(0, parts + (26,) if len(parts) == 3 else parts)  # what the header of its plans holds
    assert same_tensorrt(header, version)
    assert not same_tensorrt(PlanHeader(0, (parts[0], parts[1] + 1, 0, 1)), version)
