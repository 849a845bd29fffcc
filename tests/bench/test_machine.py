"""Machine information is complete, JSON-ready and torch-free to collect."""

from __future__ import annotations

import json
import subprocess
import sys

from gr00t_trt.bench.machine import CpuMeter, machine_info, peak_rss_bytes, rss_bytes


def test_machine_info_fields():
    info = machine_info()
    json.dumps(info)
    assert info["cpu"] and info["cpu_threads"] >= 1 and info["device"]
    assert info["versions"]["onnxruntime"] and info["versions"]["numpy"]
    assert info["git"] is None or len(info["git"]["commit"]) >= 7
    assert peak_rss_bytes() >= (rss_bytes() or 0) > 0


def test_cpu_meter_counts_other_load_only():
    meter = CpuMeter().start()
    sum(i * i for i in range(200_000))  # our own work must not count as other processes' load
    cores = meter.foreign_cores()
    assert cores is None or 0.0 <= cores <= 64


def test_torch_free_modules():
    """runner, stats, machine, roofline, devices, report and model_only import without torch."""
    code = (
        "import sys, builtins\n"
        "real = builtins.__import__\n"
        "def guard(name, *a, **k):\n"
        "    if name == 'torch' or name.startswith('torch.'):\n"
        "        raise ImportError('torch is blocked')\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = guard\n"
        "import gr00t_trt.bench.runner, gr00t_trt.bench.report, gr00t_trt.bench.model_only\n"
        "import gr00t_trt.bench.reference\n"
        "assert 'torch' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
