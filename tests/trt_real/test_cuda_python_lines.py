"""The genuine cuda-python 12.6.0, 12.6.2.post1, 12.9 and 13.x runtime modules, without a GPU (issue 16).

Each line in its own interpreter (``cuda_probe.py``): gr00t_trt loads it (either layout), reports no GPU in
one line, every cudart call gr00t_trt's source makes exists with the stand-in's signature, and the line's
stand-in (``standin.cudart_lines``) fails each no-driver call exactly as the real module does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .harness import REPO, Unavailable, fetch_wheel

#: stand-in label -> the wheels that make up that line (cuda-python < 12.6.1 and 12.6.2 are one wheel)
REAL_CUDA_PYTHON = {
    "12.6.0": ("cuda-python==12.6.0",),  # only cuda.cudart
    "12.6.2": ("cuda-python==12.6.2.post1",),  # raises RuntimeError without libcuda
    "12.9": ("cuda-bindings==12.9.0",),  # the 12.x line `gr00t-trt[trt]` resolves to
    "13.4": ("cuda-bindings==13.4.4", "cuda-pathfinder==1.9.1"),  # `gr00t-trt[trt-cu13]`; driver r580+
}
LAYOUT = {"12.6.0": "cuda.cudart", "12.6.2": "cuda.bindings.runtime", "12.9": "cuda.bindings.runtime",
          "13.4": "cuda.bindings.runtime"}
RUNTIME = {"12.6.0": 12060, "12.6.2": 12060, "12.9": 12090, "13.4": 13040}  # cudaRuntimeGetVersion
_results: dict[str, object] = {}


def _probe(label: str) -> dict:
    if label not in _results:
        try:
            dirs = [fetch_wheel(req) for req in REAL_CUDA_PYTHON[label]]
        except Unavailable as exc:
            _results[label] = exc
        else:
            args = [sys.executable, str(Path(__file__).with_name("cuda_probe.py")), label, "--repo", str(REPO)]
            for folder in dirs:
                args += ["--cuda-dir", str(folder)]
            env = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "PYTHONPATH")}
            proc = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env, cwd=str(REPO))
            assert proc.returncode == 0, f"cuda_probe {label} failed:\n{proc.stderr[-4000:]}"
            _results[label] = json.loads(proc.stdout.strip().splitlines()[-1])
    result = _results[label]
    if isinstance(result, Unavailable):
        pytest.skip(str(result))
    return result  # type: ignore[return-value]


@pytest.fixture(params=sorted(REAL_CUDA_PYTHON))
def line(request):
    return request.param, _probe(request.param)


def test_gr00t_trt_loads_each_line_and_says_no_gpu_in_one_line(line):
    label, result = line
    described = result["describe"]
    assert described["layout"] == LAYOUT[label]
    assert described["version"] == REAL_CUDA_PYTHON[label][0].split("==")[1]
    assert described["runtime"] == RUNTIME[label]
    assert described["driver"] in (None, 0)
    assert result["driver_line"] == "none — libcuda.so.1 not found or no NVIDIA driver loaded"
    assert result["probe"].startswith("no usable CUDA GPU — cudaGetDeviceCount ") and "\n" not in result["probe"]
    raised = label.startswith("12.6")
    assert ("raised RuntimeError: Failed to dlopen libcuda.so.1" in result["probe"]) == raised
    assert ("returned cudaErrorInsufficientDriver (35)" in result["probe"]) == (not raised)


def test_every_cudart_call_gr00t_trt_makes_exists_on_each_line(line):
    label, result = line
    assert result["missing_chains"] == [], f"cuda-python {label} lacks {result['missing_chains']}"


def test_every_cudart_call_gr00t_trt_makes_fits_the_real_signature_on_each_line(line):
    label, result = line
    assert result["call_sites"] >= 25  # the walker sees the backend's and the probe's calls
    assert result["incompatible_calls"] == [], f"cuda-python {label}: {result['incompatible_calls']}"


def test_standin_signatures_match_each_line(line):
    label, result = line
    assert result["conformance"] == [], f"stand-in vs cuda-python {label}: {result['conformance']}"


def test_line_standin_fails_without_a_driver_as_the_real_module_does(line):
    label, result = line
    assert result["standin_probe"] == result["probe"]
    assert result["standin_calls"] == result["real_calls"]
