"""The engine cache: a plan is reused or loaded only when what it was built for matches this machine.

``EngineKey`` = GPU model and compute capability (sm_87 is both AGX Orin and Orin Nano; TensorRT warns
against cross-model plans), TensorRT version, precision, ONNX sha256 (of the graph file and its external
weights, from the manifest) and the optimisation profile (a re-export with a larger ``--max-batch`` keeps
the ONNX but needs a wider profile). Each ``<graph>.plan`` has a ``<graph>.plan.json`` sidecar
(architecture §3) holding the key, the plan's own sha256 (a truncated or replaced plan is refused), the
profile, build flags, build time and the per-layer precision summary. A multi-GB plan is hashed once per
process (remembered by path, size, mtime and inode), not at every probe and load.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ..base.errors import EngineError
from ..base.files import read_json, write_atomic
from ..contract.manifest import GraphEntry, Manifest, sha256_file
from .device import GpuInfo
from .plan import read_plan_header, same_tensorrt
from .profiles import graph_profile

SIDECAR_SUFFIX = ".json"
SIDECAR_FORMAT = "gr00t-trt-engine"
SIDECAR_VERSION = 2  # 2: the key names the GPU model and the optimisation profile
TIMING_CACHE_NAME = "timing.cache"


@dataclass(frozen=True)
class EngineKey:
    """What makes a plan reusable."""

    compute_capability: str  # "8.9"
    gpu_name: str  # "NVIDIA GeForce RTX 4090", "Orin (nvgpu)"
    trt_version: str  # "10.13.0.35"
    precision: str  # the graph's precision in the manifest
    onnx_sha256: str  # sha256 over the graph's .onnx and .onnx.data hashes
    profile_sha256: str  # sha256 of the optimisation profile (min/opt/max of every input)

    def differences(self, other: EngineKey) -> list[str]:
        """Human-readable fields where ``other`` (what a plan was built for) differs from ``self``."""
        labels = {"compute_capability": "compute capability", "gpu_name": "GPU", "trt_version": "TensorRT",
                  "precision": "precision", "onnx_sha256": "ONNX sha256", "profile_sha256": "optimisation profile"}
        out = []
        for field, label in labels.items():
            mine, theirs = getattr(self, field), getattr(other, field)
            if mine != theirs:
                if field.endswith("sha256"):
                    mine, theirs = mine[:12] + "…", theirs[:12] + "…"
                out.append(f"{label} {theirs} (this machine/export: {mine})")
        return out

    @classmethod
    def from_sidecar(cls, value: Any, source: str) -> EngineKey:
        """The key stored in a sidecar, or one line saying which field is missing or of the wrong type."""
        names = [f.name for f in fields(cls)]
        if not isinstance(value, dict):
            raise EngineError(f"sidecar {source}: 'key' is {type(value).__name__}, expected an object")
        for name in names:
            if not isinstance(value.get(name), str):
                raise EngineError(f"sidecar {source}: key field {name!r} is {type(value.get(name)).__name__}, "
                                  "expected a string")
        return cls(**{name: value[name] for name in names})


def onnx_digest(manifest: Manifest, entry: GraphEntry) -> str:
    """One hash for the graph and its weights, from the manifest's per-file sha256."""
    parts = []
    for rel in (entry.file, entry.file + ".data"):
        if rel in manifest.files:
            parts.append(f"{rel}:{manifest.files[rel]}")
    if not parts:
        raise EngineError(f"graph {entry.name!r} has no sha256 in the manifest — re-export")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def profile_digest(manifest: Manifest, entry: GraphEntry) -> str:
    text = json.dumps(graph_profile(manifest, entry).to_dict(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def engine_key(manifest: Manifest, entry: GraphEntry, gpu: GpuInfo, trt_version: str) -> EngineKey:
    return EngineKey(gpu.sm, gpu.name, trt_version, entry.precision, onnx_digest(manifest, entry),
                     profile_digest(manifest, entry))


_PLAN_HASHES: dict[tuple[str, int, int, int], str] = {}


def plan_sha256(plan: Path) -> str:
    """sha256 of a plan file, computed once per process for an unchanged file (path, size, mtime, inode)."""
    st = os.stat(plan)
    memo = (str(Path(plan).resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    if memo not in _PLAN_HASHES:
        _PLAN_HASHES[memo] = sha256_file(plan)
    return _PLAN_HASHES[memo]


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
            "plan_sha256": plan_sha256(plan), **details}
    path = sidecar_path(plan)
    write_atomic(path, json.dumps(data, indent=2) + "\n")
    return path


def read_sidecar(plan: Path) -> dict[str, Any]:
    """The sidecar of ``plan`` as an object with a valid key and plan sha256, or one line saying why not."""
    path = sidecar_path(plan)
    if not path.is_file():
        raise EngineError(f"plan {plan} has no sidecar {path.name}")
    data = read_json(path, "engine sidecar", EngineError, expect=dict)
    if data.get("format") != SIDECAR_FORMAT or data.get("format_version") != SIDECAR_VERSION:
        raise EngineError(f"sidecar {path} is not a gr00t-trt engine sidecar of version {SIDECAR_VERSION}")
    data["key"] = EngineKey.from_sidecar(data.get("key"), str(path))
    if not isinstance(data.get("plan_sha256"), str):
        raise EngineError(f"sidecar {path}: 'plan_sha256' is {type(data.get('plan_sha256')).__name__}, expected a string")
    return data


def reuse_problem(plan: Path, key: EngineKey) -> str | None:
    """None when ``plan`` was built for exactly ``key``, is intact and its header says this TensorRT wrote
    it (what loading checks, so ``doctor``, ``probe`` and loading agree); else why it cannot be used."""
    if not plan.is_file():
        return f"no plan {plan.name}"
    try:
        data = read_sidecar(plan)
        header = read_plan_header(plan)
    except EngineError as exc:
        return str(exc)
    differences = key.differences(data["key"])
    if differences:
        return f"{plan.name} was built for " + ", ".join(differences)
    if not same_tensorrt(header, key.trt_version):
        return f"{plan.name} was written by TensorRT {header.version_text}, expected {key.trt_version} (the one installed)"
    if plan_sha256(plan) != data["plan_sha256"]:
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
    return plan
