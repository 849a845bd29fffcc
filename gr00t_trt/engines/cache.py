"""The engine cache: a plan is reused or loaded only when what it was built for matches this machine.

``EngineKey`` = GPU compute capability, TensorRT version, precision, ONNX sha256 (of the graph file and
its external weights, from the manifest). Each ``<graph>.plan`` has a ``<graph>.plan.json`` sidecar
(architecture §3) holding the key, the plan's own sha256 (a truncated or replaced plan is refused), the
profile, build flags, build time and the per-layer precision summary.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import EngineError
from ..files import write_atomic
from ..manifest import GraphEntry, Manifest, sha256_file
from .device import GpuInfo
from .plan import check_plan_version

SIDECAR_SUFFIX = ".json"
SIDECAR_FORMAT = "gr00t-trt-engine"
SIDECAR_VERSION = 1
TIMING_CACHE_NAME = "timing.cache"


@dataclass(frozen=True)
class EngineKey:
    """What makes a plan reusable."""

    compute_capability: str  # "8.9"
    trt_version: str  # "10.13.0.35"
    precision: str  # the graph's precision in the manifest
    onnx_sha256: str  # sha256 over the graph's .onnx and .onnx.data hashes

    def differences(self, other: EngineKey) -> list[str]:
        """Human-readable fields where ``other`` (what a plan was built for) differs from ``self``."""
        labels = {"compute_capability": "compute capability", "trt_version": "TensorRT",
                  "precision": "precision", "onnx_sha256": "ONNX sha256"}
        out = []
        for field, label in labels.items():
            mine, theirs = getattr(self, field), getattr(other, field)
            if mine != theirs:
                if field == "onnx_sha256":
                    mine, theirs = mine[:12] + "…", theirs[:12] + "…"
                out.append(f"{label} {theirs} (this machine/export: {mine})")
        return out


def onnx_digest(manifest: Manifest, entry: GraphEntry) -> str:
    """One hash for the graph and its weights, from the manifest's per-file sha256."""
    parts = []
    for rel in (entry.file, entry.file + ".data"):
        if rel in manifest.files:
            parts.append(f"{rel}:{manifest.files[rel]}")
    if not parts:
        raise EngineError(f"graph {entry.name!r} has no sha256 in the manifest — re-export")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def engine_key(manifest: Manifest, entry: GraphEntry, gpu: GpuInfo, trt_version: str) -> EngineKey:
    return EngineKey(gpu.sm, trt_version, entry.precision, onnx_digest(manifest, entry))


def target_name(gpu: GpuInfo, trt_version: str) -> str:
    """Engine folder name of one build target, e.g. ``sm110-trt10.13.0.35``."""
    return f"sm{gpu.compute_capability[0]}{gpu.compute_capability[1]}-trt{trt_version}"


def default_engine_dir(export_dir: Path, gpu: GpuInfo, trt_version: str) -> Path:
    return Path(export_dir) / "engines" / target_name(gpu, trt_version)


def plan_path(engine_dir: Path, graph: str) -> Path:
    return Path(engine_dir) / f"{graph}.plan"


def sidecar_path(plan: Path) -> Path:
    return plan.with_name(plan.name + SIDECAR_SUFFIX)


def write_sidecar(plan: Path, key: EngineKey, **details: Any) -> Path:
    data = {"format": SIDECAR_FORMAT, "format_version": SIDECAR_VERSION, "key": asdict(key),
            "plan_sha256": sha256_file(plan), **details}
    path = sidecar_path(plan)
    write_atomic(path, json.dumps(data, indent=2) + "\n")
    return path


def read_sidecar(plan: Path) -> dict[str, Any]:
    path = sidecar_path(plan)
    if not path.is_file():
        raise EngineError(f"plan {plan} has no sidecar {path.name}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise EngineError(f"sidecar {path} is not valid JSON ({exc.msg})") from None
    if data.get("format") != SIDECAR_FORMAT or data.get("format_version") != SIDECAR_VERSION:
        raise EngineError(f"sidecar {path} is not a gr00t-trt engine sidecar of version {SIDECAR_VERSION}")
    return data


def reuse_problem(plan: Path, key: EngineKey) -> str | None:
    """None when ``plan`` was built for exactly ``key`` and is intact; else why it cannot be used."""
    if not plan.is_file():
        return f"no plan {plan.name}"
    try:
        data = read_sidecar(plan)
        built_for = EngineKey(**data["key"])
    except (EngineError, KeyError, TypeError) as exc:
        return str(exc) if isinstance(exc, EngineError) else f"sidecar of {plan.name} is malformed"
    differences = key.differences(built_for)
    if differences:
        return f"{plan.name} was built for " + ", ".join(differences)
    if sha256_file(plan) != data.get("plan_sha256"):
        return f"{plan.name} does not match the sha256 in its sidecar (truncated or replaced)"
    return None


def rebuild_command(export_dir: Path, engine_dir: Path, graphs: list[str] | None = None) -> str:
    only = "".join(f" --only {g}" for g in graphs or ())
    return f"gr00t-trt build {export_dir} --out {engine_dir}{only}"


def require_loadable(export_dir: Path, engine_dir: Path, graph: str, key: EngineKey) -> Path:
    """The plan of ``graph`` if it may be loaded here; else refuse with the exact rebuild command."""
    plan = plan_path(engine_dir, graph)
    command = rebuild_command(export_dir, engine_dir, [graph])
    problem = reuse_problem(plan, key)
    if problem is not None:
        raise EngineError(f"cannot load the {graph} engine: {problem} — rebuild it: {command}")
    check_plan_version(plan, key.trt_version, command)
    return plan
