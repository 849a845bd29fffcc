"""The ``trtexec`` command lines equivalent to ``gr00t-trt build``, for people who build on a Jetson with it.

Same inputs as our builder: strongly typed network (precision comes from the graph), one profile from the
manifest's min/opt/max, the shared timing cache, the same workspace and optimisation level. Paths are
relative to the script (it starts by changing to its own folder), so the export can be copied to the
device; its last command, ``gr00t-trt build --adopt``, verifies the plans and writes their sidecars.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from ..base.files import write_atomic
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


def build_script(commands: list[list[str]], engine_dir: Path, adopt: list[str]) -> str:
    """The script text; paths in ``commands``/``engine_dir``/``adopt`` are relative to the script's folder."""
    lines = [
        "#!/usr/bin/env bash",
        "# TensorRT engines with trtexec, equivalent to `gr00t-trt build` (written by `gr00t-trt build --dry-run`).",
        "# Run on the target device: plans are tied to its GPU and TensorRT version.",
        "set -euo pipefail",
        'cd "$(dirname "$0")"',
        f"mkdir -p {shlex.quote(str(engine_dir))}",
    ]
    lines += [shlex.join(c) for c in commands]
    lines += ["# verify the plans (TensorRT, GPU, I/O, profile, precision audit) and write their sidecars",
              shlex.join(adopt)]
    return "\n".join(lines) + "\n"


def script_relative(path: Path, script: Path) -> Path:
    """``path`` as the script sees it after changing to its own folder."""
    return Path(os.path.relpath(Path(path).resolve(), Path(script).resolve().parent))


def write_build_script(path: Path, commands: list[list[str]], engine_dir: Path, adopt: list[str]) -> str:
    text = build_script(commands, engine_dir, adopt)
    write_atomic(path, text.encode())
    os.chmod(path, 0o755)
    return text


def timing_cache_path(engine_dir: Path, timing_cache: Path | None) -> Path:
    return Path(timing_cache) if timing_cache else Path(engine_dir) / TIMING_CACHE_NAME
