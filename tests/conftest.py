"""Shared fixtures: one tiny synthetic checkpoint and its fp32 export per test session.

``gpu``-marked tests are skipped with a reason when no CUDA GPU with TensorRT is usable.
"""

from __future__ import annotations

import os

import pytest

# keep ONNX Runtime and torch polite on 2-core CI machines
os.environ.setdefault("OMP_NUM_THREADS", "2")


def _gpu_available() -> bool:
    try:
        import tensorrt  # noqa: F401
        from cuda.bindings import runtime as cudart
    except ImportError:
        return False
    err, count = cudart.cudaGetDeviceCount()
    return int(err) == 0 and count > 0


def pytest_collection_modifyitems(config, items):
    if _gpu_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU with TensorRT and cuda-python; none usable here")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    from gr00t_trt.model.synthetic import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", "tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_export(tiny_checkpoint, tmp_path_factory):
    from gr00t_trt.export.driver import ExportOptions, export_checkpoint

    out = tmp_path_factory.mktemp("export") / "tiny-fp32"
    export_checkpoint(tiny_checkpoint, out, ExportOptions(max_batch=2))
    return out
