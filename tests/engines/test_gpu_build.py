"""Real TensorRT on a real GPU: build the tiny export, audit it, reuse it (skipped without a GPU)."""

from __future__ import annotations

import pytest

from gr00t_trt.engines.build import BuildOptions, build_engines
from gr00t_trt.engines.plan import read_plan_header, same_tensorrt


@pytest.mark.gpu
def test_real_build_of_the_tiny_export(tiny_export, tmp_path):
    import tensorrt as trt

    report = build_engines(tiny_export, BuildOptions(out=tmp_path, workspace_gb=1, opt_level=0))
    assert len(report.engines) == 8 and not any(e.reused for e in report.engines)
    for e in report.engines:
        assert same_tensorrt(read_plan_header(e.plan), trt.__version__)
        assert e.precisions  # the audit read per-layer precisions back
    assert all(e.reused for e in build_engines(tiny_export, BuildOptions(out=tmp_path)).engines)


@pytest.mark.gpu
def test_real_trt_backend_matches_ort_and_replays_cuda_graphs(tiny_export, tmp_path):
    import shutil

    import numpy as np

    from gr00t_trt.processing.observations import synthetic_observation
    from gr00t_trt.runtime.policy import Policy

    folder = shutil.copytree(tiny_export, tmp_path / "export")
    build_engines(folder, BuildOptions(workspace_gb=1))
    with Policy.load(folder, backend="ort") as ref, Policy.load(folder, backend="auto") as policy:
        assert policy.pipeline.backend.name == "trt"
        tag = sorted(policy.manifest.embodiments)[0]
        for batch in (1, 2):
            obs = synthetic_observation(policy.preprocessor.spec, tag, seed=batch, batch=batch,
                                        image_sizes=policy.manifest.image_sizes)
            expected = ref.predict(obs, embodiment=tag, seed=0)
            for _ in range(3):
                got = policy.predict(obs, embodiment=tag, seed=0)
            for key in expected:  # fp32 engines: TF32 is off unless asked, so tight bounds hold
                np.testing.assert_allclose(got[key], expected[key], rtol=1e-3, atol=1e-3)
        captured = [p for plan in policy.pipeline._plans.values() for p in plan.programs]
        assert captured and all(p.handle.graph_exec is not None or p.handle.capture_failed for p in captured)


def _export_at(tiny_checkpoint, folder, precision: str):
    from gr00t_trt.export.driver import ExportOptions, export_checkpoint

    export_checkpoint(tiny_checkpoint, folder, ExportOptions(precision=precision, embodiments=("libero_panda",),
                                                               calib_count=2))
    build_engines(folder, BuildOptions(workspace_gb=2))  # audited: a GEMM left in fp32 fails the build
    return folder


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp16", "bf16", "fp8"])
def test_trt_engines_meet_the_section_7_thresholds(tiny_checkpoint, tmp_path, precision):
    """Every level of verify on the TensorRT backend, at each half precision and fp8, against the
    unoptimised PyTorch reference with architecture §7's thresholds for that precision."""
    from gr00t_trt.engines.device import probe_gpu
    from gr00t_trt.verification.verify import verify_export

    cc = probe_gpu().compute_capability
    if precision == "fp8" and cc < (8, 9):
        pytest.skip(f"fp8 needs compute capability ≥ 8.9, this GPU has {cc[0]}.{cc[1]}")
    if precision == "bf16" and cc < (8, 0):
        pytest.skip(f"bf16 needs compute capability ≥ 8.0, this GPU has {cc[0]}.{cc[1]}")
    folder = _export_at(tiny_checkpoint, tmp_path / precision, precision)
    report = verify_export(folder, tiny_checkpoint, backend="trt", seeds=2)
    assert report.context["backend"] == "trt"
    assert report.passed, [(c.stage, c.cosine, c.mean_abs) for c in report.failures]


@pytest.mark.gpu
def test_steady_state_allocates_no_device_or_host_memory(tiny_export, tmp_path):
    """After warm-up (capture included) a control step allocates nothing: device memory in use and the
    Python heap stay flat over 50 steps."""
    import shutil
    import tracemalloc

    from gr00t_trt.engines.device import load_cudart
    from gr00t_trt.processing.observations import synthetic_observation
    from gr00t_trt.runtime.policy import Policy

    cudart = load_cudart()
    folder = shutil.copytree(tiny_export, tmp_path / "export")
    build_engines(folder, BuildOptions(workspace_gb=1))
    with Policy.load(folder, backend="trt") as policy:
        tag = sorted(policy.manifest.embodiments)[0]
        obs = synthetic_observation(policy.preprocessor.spec, tag, seed=0, image_sizes=policy.manifest.image_sizes)
        for _ in range(5):
            policy.predict(obs, embodiment=tag, seed=0)
        err, free_before, _ = cudart.cudaMemGetInfo()
        tracemalloc.start()
        snapshot = tracemalloc.take_snapshot()
        for _ in range(50):
            policy.predict(obs, embodiment=tag, seed=0)
        grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(snapshot, "filename"))
        tracemalloc.stop()
        err, free_after, _ = cudart.cudaMemGetInfo()
    assert free_after == free_before, f"device memory in use grew by {free_before - free_after} bytes"
    assert grown < 64 << 10, f"the Python heap grew {grown} bytes over 50 steps"
