"""cuda-python 12.6.0 / 12.6.2 / 12.9 / 13.x through their stand-ins: no driver or a driver too old is
"no usable GPU" in one line everywhere (probe, doctor, build, backend="auto"), never a traceback; the old
``cuda.cudart`` layout works; doctor names the cuda-python line the driver needs (issue 16, defects 4-5)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from gr00t_trt.base.errors import EngineError
from gr00t_trt.cli import app
from gr00t_trt.contract.manifest import load_manifest
from gr00t_trt.engines.device import load_cudart, probe_gpu
from gr00t_trt.runtime.ort_backend import OrtBackend
from gr00t_trt.runtime.registry import make_backend
from gr00t_trt.runtime.trt_backend import TrtBackend
from gr00t_trt.workflows.doctor import run_doctor
from standin.cudart_lines import LINES, install_line


@pytest.mark.parametrize("label", sorted(LINES))
def test_no_driver_library_is_one_line_no_gpu_everywhere(label, tiny_export):
    with install_line(label, driver=0):
        with pytest.raises(EngineError) as caught:
            probe_gpu(0)
        message = str(caught.value)
        assert message.startswith("no usable CUDA GPU — cudaGetDeviceCount ") and "\n" not in message
        assert ("raised RuntimeError: Failed to dlopen libcuda.so.1" in message) == LINES[label].raises_without_driver
        manifest = load_manifest(tiny_export, verify_files=False)
        assert TrtBackend.probe(tiny_export, manifest).startswith("no usable CUDA GPU — cudaGetDeviceCount")
        assert type(make_backend("auto", tiny_export, manifest)) is OrtBackend
        doctor = run_doctor().to_dict()
        assert doctor["gpu"].startswith("no GPU — cudaGetDeviceCount ")
        assert doctor["cuda driver"] == "none — libcuda.so.1 not found or no NVIDIA driver loaded"
        assert doctor["cuda-python"].startswith(f"{LINES[label].version} (")
        assert doctor["tensorrt"].startswith("10.13.0.35 installed but unusable: no GPU (cudaGetDeviceCount")


def test_cli_build_and_doctor_without_libcuda_on_12_6_2(tiny_export, tmp_path):
    """The issue's reproduction: 12.6.2.post1 without libcuda used to end in a RuntimeError traceback."""
    with install_line("12.6.2", driver=0):
        result = CliRunner().invoke(app, ["build", str(tiny_export), "--out", str(tmp_path)])
        assert result.exit_code != 0 and not isinstance(result.exception, RuntimeError), result.exception
        assert "no usable CUDA GPU — cudaGetDeviceCount raised RuntimeError: Failed to dlopen libcuda.so.1" in result.output
        assert CliRunner().invoke(app, ["doctor"]).exit_code in (0, 1)


def test_cuda_python_13_on_a_cuda_12_driver_names_the_line_to_install():
    with install_line("13.4", driver=12060):
        with pytest.raises(EngineError, match=r"^no usable CUDA GPU — cudaGetDeviceCount returned "
                                              r"cudaErrorInsufficientDriver \(35\) — cuda-python 13.4.4 needs a CUDA 13 "
                                              r"driver \(r580 or newer\), this driver supports CUDA 12.6 — install the "
                                              r"CUDA 12 line: pip install 'gr00t-trt\[trt\]'"):
            probe_gpu(0)
        doctor = run_doctor()
        row = next(r for r in doctor.rows if r.name == "cuda driver")
        assert not row.ok and row.value.startswith("CUDA 12.6 — cuda-python 13.4.4 needs a CUDA 13 driver")
        assert doctor.value("cuda-python") == "13.4.4 (cuda.bindings.runtime, CUDA 13.4)"


@pytest.mark.parametrize(("label", "driver", "expected"), [
    ("12.6.0", 12060, "12.6.0 (cuda.cudart, CUDA 12.6)"),  # only the pre-12.6.1 layout
    ("12.9", 12060, "12.9.0 (cuda.bindings.runtime, CUDA 12.9)"),  # minor-version compatible
    ("12.6.2", 13000, "12.6.2.post1 (cuda.bindings.runtime, CUDA 12.6)"),  # a newer driver runs older lines
    ("13.4", 13000, "13.4.4 (cuda.bindings.runtime, CUDA 13.4)"),
])
def test_every_line_finds_the_gpu_when_the_driver_can_run_it(label, driver, expected):
    with install_line(label, driver=driver):
        assert load_cudart() is not None
        gpu = probe_gpu(0)
        assert gpu.name == "Stand-in GPU" and gpu.sm == "8.9"
        doctor = run_doctor()
        assert doctor.value("cuda-python") == expected
        row = next(r for r in doctor.rows if r.name == "cuda driver")
        assert row.ok and row.value.startswith(f"CUDA {driver // 1000}.{driver % 1000 // 10} (")
        assert doctor.value("gpu").startswith("Stand-in GPU, compute capability 8.9")


def test_no_cuda_python_at_all_names_both_lines():
    import sys

    with install_line("13.4"):
        sys.modules["cuda.bindings.runtime"] = None  # type: ignore[assignment]
        with pytest.raises(Exception, match=r"needs cuda-python .*gr00t-trt\[trt\].*gr00t-trt\[trt-cu13\]"):
            load_cudart()
        assert run_doctor().value("cuda-python").startswith("not installed — pip install 'gr00t-trt[trt]'")
