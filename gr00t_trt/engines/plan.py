"""Read a TensorRT plan's header without TensorRT (tensorrt-notes §1.3), to refuse foreign plans early.

trtexec's ``--getPlanVersionOnly`` reads the first 28 bytes: uint32 magic ``ftrt`` (0x74727466), uint32
serialization version (0 is the only known layout), and bytes 24..27 = major, minor, patch, build of the
TensorRT that wrote it. Stdlib only.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from ..base.errors import EngineError

PLAN_MAGIC = 0x74727466
HEADER_SIZE = 28
KNOWN_SERIALIZATION_VERSIONS = (0,)


@dataclass(frozen=True)
class PlanHeader:
    """What a plan says about itself; ``trt_version`` is None when its layout is unknown to us."""

    serialization_version: int
    trt_version: tuple[int, int, int, int] | None

    @property
    def version_text(self) -> str:
        return "unknown" if self.trt_version is None else ".".join(map(str, self.trt_version))


def parse_plan_header(data: bytes, source: str = "plan") -> PlanHeader:
    """Decode the first 28 bytes of a plan; refuses anything that is not a TensorRT plan."""
    if len(data) < HEADER_SIZE:
        raise EngineError(f"{source} is not a TensorRT plan — expected at least {HEADER_SIZE} bytes, got {len(data)}")
    magic, serialization = struct.unpack_from("<II", data, 0)
    if magic != PLAN_MAGIC:
        raise EngineError(
            f"{source} is not a TensorRT plan — expected magic 0x{PLAN_MAGIC:08x} ('ftrt'), got 0x{magic:08x}"
        )
    if serialization not in KNOWN_SERIALIZATION_VERSIONS:
        return PlanHeader(serialization, None)
    return PlanHeader(serialization, tuple(data[24:28]))  # type: ignore[arg-type]


def read_plan_header(path: str | Path) -> PlanHeader:
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(HEADER_SIZE)
    except OSError as exc:
        raise EngineError(f"cannot read plan {path}: {exc.strerror}") from None
    return parse_plan_header(data, str(path))


def version_tuple(version: str) -> tuple[int, ...]:
    """``"10.13.0.35"`` → (10, 13, 0, 35), ``"10.3.0"`` → (10, 3, 0): only the parts the text has."""
    return tuple(int(p) for p in version.split(".")[:4] if p.isdigit())


def same_tensorrt(header: PlanHeader, trt_version: str) -> bool:
    """Whether the plan was written by ``trt_version``, compared on the parts the module reports.

    TensorRT 10.0-10.7 report three parts (the 10.3 wheel says ``"10.3.0"``) while the header always holds
    the build too (10.3 GA is 10.3.0.26); the sidecar pins the full string the plan was built with.
    """
    wanted = version_tuple(trt_version)
    return header.trt_version is None or header.trt_version[: len(wanted)] == wanted


def check_plan_version(path: str | Path, trt_version: str, rebuild_hint: str = "") -> PlanHeader:
    """Refuse, before deserialisation, a plan written by another TensorRT than ``trt_version``."""
    header = read_plan_header(path)
    if not same_tensorrt(header, trt_version):
        raise EngineError(
            f"plan {path} was built by TensorRT {header.version_text}, expected {trt_version} (the one installed)"
            + (f" — rebuild it: {rebuild_hint}" if rebuild_hint else " — rebuild it on this machine")
        )
    return header
