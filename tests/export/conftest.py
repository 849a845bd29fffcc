"""Fixtures of the export tests: one tiny mixed-precision export shared by the precision and fp8 tests."""

from __future__ import annotations

import pytest

#: every precision at once: fp8 vision (patch embedding excluded), bf16 backbone, fp8 action-head graphs,
#: fp16 small graphs
MIXED_PLAN = "vision=fp8,backbone=bf16,dit_context=fp8,dit=fp8"


@pytest.fixture(scope="session")
def mixed_export(tiny_checkpoint, tmp_path_factory):
    from gr00t_trt.export.driver import ExportOptions, export_checkpoint

    out = tmp_path_factory.mktemp("precision") / "tiny-mixed"
    export_checkpoint(
        tiny_checkpoint, out,
        ExportOptions(precision="fp16", graph_precision=MIXED_PLAN, embodiments=("libero_panda",),
                      image_sizes=((252, 252),), calib_count=1, max_batch=2),
    )
    return out
