"""What machine a benchmark ran on, and how busy it was: everything a reader needs to reproduce it.

Versions are read from package metadata (nothing heavy is imported), GPU facts from ``nvidia-smi`` or
``/proc/driver/nvidia`` when present, Jetson model and power mode from the device tree and nvpmodel.
Every probe is best-effort: a missing fact is ``None``, never an error. Stdlib only.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import resource
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from ..base.cpu import cpu_flags as base_cpu_flags

#: distributions whose versions go into the report header, when installed
VERSIONED_PACKAGES = ("gr00t-trt", "numpy", "onnxruntime", "onnxruntime-gpu", "onnx", "tensorrt", "cuda-python", "torch")


def package_version(name: str) -> str | None:
    """Installed version of a distribution, without importing it."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return None


def _run(*command: str, timeout: float = 5.0) -> str | None:
    if shutil.which(command[0]) is None:
        return None
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo``; ``platform.processor()`` elsewhere)."""
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        if line.lower().startswith(("model name", "hardware", "cpu model")):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_flags(prefixes: tuple[str, ...] = ("avx", "fma", "amx", "neon", "sve", "asimd")) -> list[str]:
    """The CPU's vector-extension flags (what its GEMM kernels can use), from ``/proc/cpuinfo``."""
    return base_cpu_flags(prefixes)


def usable_threads() -> int:
    """CPUs this process may run on (its affinity mask, which containers narrow), not the host's total."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def total_ram_bytes() -> int | None:
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return None


def available_ram_bytes() -> int | None:
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


def _status_kib(field: str) -> int | None:
    for line in (_read("/proc/self/status") or "").splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def rss_bytes() -> int | None:
    """Current resident set size of this process."""
    kib = _status_kib("VmRSS")
    return None if kib is None else kib * 1024


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (its high-water mark)."""
    kib = _status_kib("VmHWM")
    if kib is None:  # not Linux: ru_maxrss is KiB on Linux/BSD, bytes on macOS
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if platform.system() == "Darwin" else peak * 1024
    return kib * 1024


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def gpus() -> list[dict[str, Any]]:
    """Name, driver version and memory of every NVIDIA GPU ``nvidia-smi`` lists (empty without one)."""
    out = _run("nvidia-smi", "--query-gpu=name,driver_version,memory.total,compute_cap", "--format=csv,noheader")
    found = []
    for line in (out or "").splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 2:
            found.append({"name": parts[0], "driver": parts[1],
                          "memory": parts[2] if len(parts) > 2 else None,
                          "compute_capability": parts[3] if len(parts) > 3 else None})
    return found


def gpu_memory_used_bytes(pid: int | None = None) -> int | None:
    """Device memory this process holds on NVIDIA GPUs (``nvidia-smi``; None where it cannot tell, e.g.
    on Jetson, whose memory is the host's and shows in the RSS)."""
    out = _run("nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits")
    if out is None:
        return None
    pid = os.getpid() if pid is None else pid
    used = [int(parts[1]) for line in out.splitlines()
            if len(parts := [p.strip() for p in line.split(",")]) == 2 and parts[0] == str(pid) and parts[1].isdigit()]
    return sum(used) * 2**20 if used else 0


def nvidia_driver_version() -> str | None:
    """The kernel driver's version (``/proc/driver/nvidia/version``), also on Jetson where nvidia-smi
    may be missing."""
    text = _read("/proc/driver/nvidia/version") or ""
    for word in text.split():
        if word[:1].isdigit() and word.count(".") >= 1:
            return word
    listed = gpus()
    return listed[0]["driver"] if listed else None


def jetson_model() -> str | None:
    """e.g. "NVIDIA Jetson AGX Thor Developer Kit" (device tree), or None off Jetson."""
    text = _read("/proc/device-tree/model")
    if text and "jetson" in text.lower():
        return text.replace("\x00", "").strip()
    return None


def jetson_power_mode() -> str | None:
    """The active nvpmodel mode ("MAXN", "50W" ...): ``nvpmodel -q`` first, else its status file."""
    out = _run("nvpmodel", "-q")
    if out:
        for line in out.splitlines():
            if "power mode" in line.lower():
                return line.split(":", 1)[1].strip()
    status = _read("/var/lib/nvpmodel/status")
    if status and status.strip():
        return status.strip()  # e.g. "pmode:0000": the id, when the name is not readable
    return None


def git_revision(start: Path | None = None) -> dict[str, Any] | None:
    """Short commit and dirty flag of the git checkout holding this package (None when installed)."""
    folder = Path(start) if start else Path(__file__).resolve().parents[2]
    commit = _run("git", "-C", str(folder), "rev-parse", "--short", "HEAD", timeout=10)
    if not commit:
        return None
    dirty = _run("git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no", timeout=10)
    return {"commit": commit, "dirty": bool(dirty)}


def device_name() -> str:
    """What the benchmark's numbers belong to: the Jetson or GPU name, else "CPU <model>"."""
    jetson = jetson_model()
    if jetson:
        return jetson
    listed = gpus()
    if listed:
        return listed[0]["name"]
    return f"CPU {cpu_model()}"


def machine_info() -> dict[str, Any]:
    """The reproducibility header of a benchmark report (JSON-ready)."""
    versions = {name: v for name in VERSIONED_PACKAGES if (v := package_version(name)) is not None}
    return {
        "device": device_name(),
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cpu_threads": usable_threads(),
        "logical_cores": os.cpu_count(),
        "ram_bytes": total_ram_bytes(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "gpus": gpus(),
        "nvidia_driver": nvidia_driver_version(),
        "jetson_model": jetson_model(),
        "power_mode": jetson_power_mode(),
        "git": git_revision(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "load_average": load_average(),
    }


class CpuMeter:
    """CPU time other processes used while a block ran, in cores (0 = the machine was ours alone):
    Δ(busy jiffies of the machine, /proc/stat) − Δ(this process's and its waited-for children's jiffies),
    over the wall time.
    On a shared machine this says whether a measurement can be trusted. None off Linux."""

    def __init__(self) -> None:
        self.hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._start: tuple[float, int, int] | None = None

    @staticmethod
    def _machine_busy() -> int | None:
        text = _read("/proc/stat")
        if not text:
            return None
        fields = [int(v) for v in text.split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]) - idle

    @staticmethod
    def _own() -> int | None:
        text = _read("/proc/self/stat")
        if not text:
            return None
        stat = text.rsplit(")", 1)[1].split()
        # utime + stime of all threads, + cutime + cstime of finished children (a reference process we ran)
        return int(stat[11]) + int(stat[12]) + int(stat[13]) + int(stat[14])

    def start(self) -> CpuMeter:
        busy, own = self._machine_busy(), self._own()
        self._start = None if busy is None or own is None else (time.perf_counter(), busy, own)
        return self

    def foreign_cores(self) -> float | None:
        if self._start is None:
            return None
        t0, busy0, own0 = self._start
        wall = time.perf_counter() - t0
        busy, own = self._machine_busy(), self._own()
        if busy is None or own is None or wall <= 0:
            return None
        return max(0.0, ((busy - busy0) - (own - own0)) / self.hz / wall)
