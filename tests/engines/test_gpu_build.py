"""Real TensorRT on a real GPU: build the tiny export, audit it, reuse it (skipped without a GPU)."""

from __future__ import annotations

import pytest

from gr00t_trt.engines.build import BuildOptions, build_engines
from gr00t_trt.engines.plan import read_plan_header, version_tuple


@pytest.mark.gpu
def test_real_build_of_the_tiny_export(tiny_export, tmp_path):
    import tensorrt as trt

    report = build_engines(tiny_export, BuildOptions(out=tmp_path, workspace_gb=1, opt_level=0))
    assert len(report.engines) == 8 and not any(e.reused for e in report.engines)
    for e in report.engines:
        assert read_plan_header(e.plan).trt_version == version_tuple(trt.__version__)
        assert e.precisions  # the audit read per-layer precisions back
    assert all(e.reused for e in build_engines(tiny_export, BuildOptions(out=tmp_path)).engines)
