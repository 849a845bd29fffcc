"""Shared fixtures: one tiny synthetic checkpoint and its fp32 export per test session.

``gpu``-marked tests are skipped with a reason when no CUDA GPU with TensorRT is usable, and the run's
summary says how many were skipped and how many ran, so a GPU run visibly runs them.
"""

from __future__ import annotations

import functools
import os

import pytest

# keep ONNX Runtime and torch polite on 2-core CI machines
os.environ.setdefault("OMP_NUM_THREADS", "2")

pytest_plugins = ["pytester"]  # tests of this file's hooks run a small inner pytest session

_GPU_NODEIDS = pytest.StashKey[set]()


@functools.cache
def gpu_unusable_reason() -> str | None:
    """None when TensorRT imports and cuda-python sees a CUDA device; otherwise what is missing."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "tensorrt is not installed"
    from gr00t_trt.base.errors import Gr00tTrtError
    from gr00t_trt.runtime.cuda_python import ask, load_cudart

    try:
        cudart = load_cudart()  # either layout (cuda-python 12.6.0 has only cuda.cudart)
        err, count = ask(cudart.cudaGetDeviceCount)  # 12.6.x raises without libcuda
    except Gr00tTrtError as exc:
        return str(exc)
    if int(err) != 0 or count < 1:
        return f"no CUDA device visible (cudaGetDeviceCount: error {int(err)}, {count} devices)"
    return None


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    config.stash[_GPU_NODEIDS] = {item.nodeid for item in gpu_items}
    reason = gpu_unusable_reason() if gpu_items else None
    if reason is None:
        return
    skip = pytest.mark.skip(reason=f"gpu test: needs a CUDA GPU with TensorRT and cuda-python — {reason}")
    for item in gpu_items:
        item.add_marker(skip)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """One line: how many ``gpu`` tests ran and how many were skipped (a CPU run skips them all)."""
    gpu = config.stash.get(_GPU_NODEIDS, set())
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    for outcome in counts:
        counts[outcome] = len({r.nodeid for r in terminalreporter.stats.get(outcome, []) if r.nodeid in gpu})
    errors = len({r.nodeid for r in terminalreporter.stats.get("error", []) if r.nodeid in gpu})
    ran = counts["passed"] + counts["failed"] + errors
    line = f"gpu tests: {len(gpu)} selected, {ran} ran, {counts['skipped']} skipped"
    if counts["skipped"]:
        line += f" ({gpu_unusable_reason() or 'skipped by the tests themselves'})"
    terminalreporter.write_sep("-", line, yellow=bool(counts["skipped"]), green=not counts["skipped"])


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    from gr00t_trt.families.n16.synthetic import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", "tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_export(tiny_checkpoint, tmp_path_factory):
    from gr00t_trt.export.driver import ExportOptions, export_checkpoint

    out = tmp_path_factory.mktemp("export") / "tiny-fp32"
    export_checkpoint(tiny_checkpoint, out, ExportOptions())  # the default export: every camera size, batch 1..4
    return out
