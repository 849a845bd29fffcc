"""The host CPU's instruction-set flags, read from ``/proc/cpuinfo`` (Linux; empty elsewhere). Stdlib only:
the torch-free runtime chooses its int8 session options from them, benchmarks record them."""

from __future__ import annotations

import platform
from pathlib import Path

#: flags of x86 integer dot-product instructions that accumulate four int8 products straight into int32
#: (VPDPBUSD), without the int16 intermediate of AVX2's pmaddubsw
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def cpu_flags(prefixes: tuple[str, ...] | None = None, cpuinfo: str | None = None) -> list[str]:
    """The CPU's flags (those starting with one of ``prefixes``, or all), from ``/proc/cpuinfo`` or ``cpuinfo``."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return []
    for line in cpuinfo.splitlines():
        if line.lower().startswith(("flags", "features")):
            flags = line.split(":", 1)[1].split()
            return [f for f in flags if prefixes is None or f.startswith(prefixes)]
    return []


def x86_without_vnni(machine: str | None = None, cpuinfo: str | None = None) -> bool:
    """True on an x86-64 CPU that has no VNNI, or whose flags cannot be read (the cautious answer)."""
    if (machine or platform.machine()).lower() not in ("x86_64", "amd64", "x64", "i686", "x86"):
        return False
    return not set(cpu_flags(cpuinfo=cpuinfo)) & set(VNNI_FLAGS)
