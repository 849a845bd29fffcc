"""The ``trtexec`` command lines equivalent to ``gr00t-trt build``, for people who build on a Jetson with it.

Same inputs as our builder: strongly typed network (precision comes from the graph), one profile from the
manifest's min/opt/max, the shared timing cache, the same workspace and optimisation level.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from ..files import write_atomic
from .cache import TIMING_CACHE_NAME
from .profiles import GraphProfile


def shapes_arg(profile: GraphProfile, which: str) -> str:
    """``name:1x16x32,other:1`` for --minShapes/--optShapes/--maxShapes."""
    return ",".join(f"{p.name}:{'x'.join(map(str, getattr(p, which)))}" for p in profile.inputs)


def trtexec_command(onnx: Path, plan: Path, profile: GraphProfile, timing_cache: Path, *,
                    workspace_gb: float, opt_level: int) -> list[str]:
    command = ["trtexec", f"--onnx={onnx}", "--stronglyTyped"]
    if profile.inputs and not all(p.is_static for p in profile.inputs):
        command += [f"--minShapes={shapes_arg(profile, 'min')}", f"--optShapes={shapes_arg(profile, 'opt')}",
                    f"--maxShapes={shapes_arg(profile, 'max')}"]
    command += [
        f"--saveEngine={plan}",
        f"--timingCacheFile={timing_cache}",
        f"--memPoolSize=workspace:{int(workspace_gb * 1024)}M",
        f"--builderOptimizationLevel={opt_level}",
        "--profilingVerbosity=detailed",
        "--skipInference",
    ]
    return command


def build_script(commands: list[list[str]], engine_dir: Path) -> str:
    lines = [
        "#!/usr/bin/env bash",
        "# TensorRT engines with trtexec, equivalent to `gr00t-trt build` (written by `gr00t-trt build --dry-run`).",
        "# Run on the target device: plans are tied to its GPU and TensorRT version.",
        "set -euo pipefail",
        f"mkdir -p {shlex.quote(str(engine_dir))}",
    ]
    lines += [shlex.join(c) for c in commands]
    return "\n".join(lines) + "\n"


def write_build_script(path: Path, commands: list[list[str]], engine_dir: Path) -> str:
    text = build_script(commands, engine_dir)
    write_atomic(path, text.encode())
    os.chmod(path, 0o755)
    return text


def timing_cache_path(engine_dir: Path, timing_cache: Path | None) -> Path:
    return Path(timing_cache) if timing_cache else Path(engine_dir) / TIMING_CACHE_NAME
