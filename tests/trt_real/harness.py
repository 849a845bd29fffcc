"""Fetch the genuine TensorRT and cuda-python Python modules and load them on a machine without a GPU.

NVIDIA's ``tensorrt-cu1x-bindings`` wheels carry the complete pybind11 module; it needs only nine
factory symbols from ``libnvinfer``/``libnvonnxparser``/``libnvinfer_plugin`` to import, which a
C stub provides (tensorrt-notes §2.1). Every class, enum and signature is then the real one; creating a
``Builder`` or ``Runtime`` fails exactly as on a machine without a GPU. Wheels are kept in a cache
outside the repository (``$GR00T_TRT_TEST_CACHE``, default ``~/.cache/gr00t-trt-tests``). pybind11 types
cannot be registered twice in one process, so each version is imported in its own subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

#: label -> pip requirement of the real bindings wheel, and the TensorRT it is the Python API of
REAL_TRT = {
    "10.3": "tensorrt-cu12-bindings==10.3.0",  # Jetson Orin, JetPack 6
    "10.13": "tensorrt-cu11-bindings==10.13.0.35",  # Jetson Thor, JetPack 7.0/7.1
    "11.4": "tensorrt-cu12-bindings==11.4.0.106",  # x86 RTX / Hopper
}
CUDA_PYTHON = ("cuda-bindings==13.4.4", "cuda-pathfinder==1.9.1")

STUB_SYMBOLS = """
void *createInferBuilder_INTERNAL(void *logger, int version) { return 0; }
void *createInferRefitter_INTERNAL(void *engine, void *logger, int version) { return 0; }
void *createInferRuntime_INTERNAL(void *logger, int version) { return 0; }
void *createNvOnnxParser_INTERNAL(void *network, void *logger, int version) { return 0; }
void *createNvOnnxParserRefitter_INTERNAL(void *refitter, void *logger, int version) { return 0; }
void *getBuilderPluginRegistry(int capability) { return 0; }
void *getPluginRegistry(void) { return 0; }
int getNvOnnxParserVersion(void) { return 0; }
int initLibNvInferPlugins(void *logger, const char *ns) { return 0; }
"""
STUB_LIBS = ("libnvinfer", "libnvonnxparser", "libnvinfer_plugin")
PROBE = Path(__file__).with_name("probe.py")
REPO = Path(__file__).resolve().parents[2]


class Unavailable(Exception):
    """The package index or a C compiler cannot be reached: the conformance tests skip with this reason."""


def cache_dir() -> Path:
    root = Path(os.environ.get("GR00T_TRT_TEST_CACHE", Path.home() / ".cache" / "gr00t-trt-tests"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def _safe(requirement: str) -> str:
    return requirement.replace("==", "-").replace("/", "_")


def fetch_wheel(requirement: str) -> Path:
    """``pip download --no-deps`` one pinned wheel (once) and unpack it into its own folder."""
    root = cache_dir()
    target = root / "unpacked" / _safe(requirement)
    if target.is_dir():
        return target
    wheels = root / "wheels" / _safe(requirement)
    wheels.mkdir(parents=True, exist_ok=True)
    if not list(wheels.glob("*.whl")):
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(wheels), requirement]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip() and "is ignored" not in ln]
            raise Unavailable(f"pip download {requirement} failed: {lines[-1] if lines else proc.returncode}")
    (wheel,) = wheels.glob("*.whl")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(tmp)
    try:
        os.replace(tmp, target)
    except OSError:  # another process unpacked it first
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def build_stub(major: int) -> Path:
    """Compile the nine-symbol stub under the three sonames of TensorRT ``major``."""
    cc = shutil.which(os.environ.get("CC", "gcc")) or shutil.which("cc")
    if cc is None:
        raise Unavailable("no C compiler (gcc/cc) on PATH to build the TensorRT symbol stub")
    out = cache_dir() / "stub" / f"trt{major}"
    if all((out / f"{lib}.so.{major}").is_file() for lib in STUB_LIBS):
        return out
    out.mkdir(parents=True, exist_ok=True)
    source = out / "stub.c"
    source.write_text(STUB_SYMBOLS)
    for lib in STUB_LIBS:
        tmp = out / f".{lib}.so.{major}.tmp"
        proc = subprocess.run(
            [cc, "-shared", "-fPIC", f"-Wl,-soname,{lib}.so.{major}", "-o", str(tmp), str(source)],
            capture_output=True, text=True,
        )
        if proc.returncode != 0:
            raise Unavailable(f"{cc} could not build the TensorRT stub: {proc.stderr.strip().splitlines()[-1:]}")
        os.replace(tmp, out / f"{lib}.so.{major}")
    return out


def fetch_cuda_python() -> list[Path]:
    """The real ``cuda.bindings`` (and the ``cuda.pathfinder`` it imports) as sys.path entries."""
    return [fetch_wheel(req) for req in CUDA_PYTHON]


def real_trt(label: str) -> tuple[Path, Path]:
    """(folder holding ``tensorrt_bindings``, stub folder) of one real TensorRT version."""
    folder = fetch_wheel(REAL_TRT[label])
    return folder, build_stub(int(label.split(".")[0]))


def run_probe(task: str, *, trt: tuple[Path, Path] | None = None, cuda: list[Path] | None = None,
              payload: dict | None = None, timeout: float = 300) -> dict:
    """Run one probe task in a fresh interpreter with the real module(s) on its path; returns its JSON."""
    args = [sys.executable, str(PROBE), task, "--repo", str(REPO)]
    if trt is not None:
        args += ["--trt-dir", str(trt[0]), "--stub-dir", str(trt[1])]
    for path in cuda or ():
        args += ["--cuda-dir", str(path)]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(payload or {}, f)
    args += ["--payload", f.name]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("LD_LIBRARY_PATH", None)
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, cwd=str(REPO))
    finally:
        os.unlink(f.name)
    if proc.returncode != 0:
        raise AssertionError(f"probe {task} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
