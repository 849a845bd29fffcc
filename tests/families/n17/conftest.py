"""Session fixtures of the N1.7 tests: one tiny synthetic checkpoint (seed 0) and its fp32 export, made once
and shared (read only) by the end-to-end, per-graph ONNX, bf16 and quantised tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def n17_checkpoint(tmp_path_factory):
    from gr00t_trt.families.registry import N17

    return N17.export().make_checkpoint(tmp_path_factory.mktemp("n17ckpt") / "tiny", "tiny", seed=0)


@pytest.fixture(scope="session")
def n17_export(n17_checkpoint, tmp_path_factory):
    """Every embodiment (unsliced action-head graphs), one image size, batch 1..2."""
    from gr00t_trt.export.driver import ExportOptions, export_checkpoint

    out = tmp_path_factory.mktemp("n17export") / "fp32"
    export_checkpoint(n17_checkpoint, out, ExportOptions(image_sizes=((256, 352),), max_batch=2))
    return out
