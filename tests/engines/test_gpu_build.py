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


@pytest.mark.gpu
def test_real_trt_backend_matches_ort_and_replays_cuda_graphs(tiny_export, tmp_path):
    import shutil

    import numpy as np

    from gr00t_trt.observations import synthetic_observation
    from gr00t_trt.runtime.policy import Policy

    folder = shutil.copytree(tiny_export, tmp_path / "export")
    build_engines(folder, BuildOptions(workspace_gb=1))
    with Policy.load(folder, backend="ort") as ref, Policy.load(folder, backend="auto") as policy:
        assert policy.pipeline.backend.name == "trt"
        tag = sorted(policy.manifest.embodiments)[0]
        for batch in (1, 2):
            obs = synthetic_observation(policy.preprocessor.spec, tag, seed=batch, batch=batch,
                                        image_sizes=policy.manifest.image_sizes)
            expected = ref.get_action(obs, embodiment=tag, seed=0)
            for _ in range(3):
                got = policy.get_action(obs, embodiment=tag, seed=0)
            for key in expected:  # fp32 engines: TF32 is off unless asked, so tight bounds hold
                np.testing.assert_allclose(got[key], expected[key], rtol=1e-3, atol=1e-3)
        captured = [p for plan in policy.pipeline._plans.values() for p in plan.programs]
        assert captured and all(p.handle.graph_exec is not None or p.handle.capture_failed for p in captured)
