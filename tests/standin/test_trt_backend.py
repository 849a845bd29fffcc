"""TrtBackend through the stand-in: parity with ONNX Runtime at fp32, CUDA-graph capture and replay across
two shape buckets, zero-copy buffers on integrated GPUs, backend="auto", refusals, orderly teardown."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import standin
from gr00t_trt.engines.build import BuildOptions, build_engines
from gr00t_trt.errors import BackendError
from gr00t_trt.manifest import load_manifest
from gr00t_trt.observations import synthetic_observation
from gr00t_trt.runtime.policy import Policy
from gr00t_trt.runtime.trt_backend import TrtBackend


@pytest.fixture(scope="module")
def trt_export(tiny_export, tmp_path_factory):
    """A copy of the tiny export with stand-in engines built for it (stand-in installed for the module)."""
    folder = shutil.copytree(tiny_export, tmp_path_factory.mktemp("trt") / "export")
    with standin.install() as state:
        build_engines(folder, BuildOptions())
        yield folder, state


def _observations(policy, batch):
    tag = sorted(policy.manifest.embodiments)[0]
    return tag, synthetic_observation(policy.preprocessor.spec, tag, seed=batch, batch=batch,
                                      image_sizes=policy.manifest.image_sizes)


def _launches(state):
    return sum(1 for owner, call in state.calls if call == "cudaGraphLaunch")


def test_auto_picks_trt_and_matches_ort_with_capture_and_replay_in_two_buckets(trt_export):
    folder, state = trt_export
    with Policy.load(folder, backend="ort") as ref, Policy.load(folder, backend="auto") as policy:
        assert policy.pipeline.backend.name == "trt"
        for batch in (1, 2):  # two shape buckets
            tag, obs = _observations(policy, batch)
            expected = ref.get_action(obs, embodiment=tag, seed=7)
            before = _launches(state)
            runs = [policy.get_action(obs, embodiment=tag, seed=7) for _ in range(3)]  # warm-up, capture, replay
            for actions in runs:
                assert actions.keys() == expected.keys()
                for key in expected:
                    np.testing.assert_allclose(actions[key], expected[key], rtol=1e-5, atol=1e-5)
            plans = [p for p in policy.pipeline._plans.values() if p.key.batch == batch]
            assert len(plans) == 1
            programs = plans[0].programs
            assert all(p.handle.graph_exec is not None for p in programs)
            assert _launches(state) - before == 2 * len(programs)  # run 2 launched the capture, run 3 replayed
        assert len(policy.pipeline._plans) == 2
        assert set(policy.last_timings) >= {"total"}


def test_without_cuda_graphs_every_launch_is_plain_enqueue(trt_export):
    folder, state = trt_export
    with Policy.load(folder, backend="trt", cuda_graphs=False) as policy:
        tag, obs = _observations(policy, 1)
        before = _launches(state)
        first = policy.get_action(obs, embodiment=tag, seed=1)
        second = policy.get_action(obs, embodiment=tag, seed=1)
        assert _launches(state) == before
        for key in first:
            np.testing.assert_array_equal(first[key], second[key])


def test_integrated_gpu_uses_mapped_zero_copy_buffers(trt_export):
    folder, state = trt_export
    state.integrated = True
    try:
        with Policy.load(folder, backend="ort") as ref, Policy.load(folder, backend="trt") as policy:
            tag, obs = _observations(policy, 1)
            expected = ref.get_action(obs, embodiment=tag, seed=3)
            for _ in range(2):
                got = policy.get_action(obs, embodiment=tag, seed=3)
            for key in expected:
                np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, atol=1e-5)
            kinds = {kind for _array, kind in state.heap.values()}
            assert "mapped" in kinds and "host" not in kinds  # host mirrors are mapped, not pinned copies
    finally:
        state.integrated = False


def test_run_once_matches_ort(trt_export):
    folder, _state = trt_export
    manifest = load_manifest(folder)
    rng = np.random.default_rng(0)
    feeds = {"state": rng.standard_normal((2, 1, manifest.dims["Ds"])).astype(np.float32),
             "embodiment_id": np.array([0, 1], np.int64)}
    with Policy.load(folder, backend="ort") as ref, Policy.load(folder, backend="trt") as policy:
        got = policy.pipeline.run_graph("state_encoder", feeds)
        want = ref.pipeline.run_graph("state_encoder", feeds)
        np.testing.assert_allclose(got["state_features"], want["state_features"], rtol=1e-6, atol=1e-6)


def test_teardown_frees_every_allocation(trt_export):
    folder, state = trt_export
    live = set(state.heap)
    policy = Policy.load(folder, backend="trt")
    tag, obs = _observations(policy, 1)
    policy.get_action(obs, embodiment=tag, seed=0)
    policy.get_action(obs, embodiment=tag, seed=0)
    assert set(state.heap) - live
    policy.close()
    assert set(state.heap) == live


def test_probe_reasons(trt_export, tmp_path):
    folder, state = trt_export
    manifest = load_manifest(folder)
    assert TrtBackend.probe(folder, manifest) is None
    reason = TrtBackend.probe(folder, manifest, engine_dir=tmp_path)
    assert reason.startswith("no plan ") and f"gr00t-trt build {folder} --out {tmp_path}" in reason
    state.device_count = 0
    try:
        assert TrtBackend.probe(folder, manifest).startswith("no usable CUDA GPU — cudaGetDeviceCount returned cudaErrorNoDevice")
        with Policy.load(folder, backend="auto") as policy:  # auto falls back to ONNX Runtime
            assert policy.pipeline.backend.name == "ort"
        with pytest.raises(BackendError, match="the trt backend cannot run .*: no usable CUDA GPU"):
            Policy.load(folder, backend="trt")
    finally:
        state.device_count = 1


def test_failed_capture_falls_back_to_plain_enqueue_and_says_so(trt_export, caplog):
    folder, state = trt_export
    state.capture_fails = True
    try:
        with Policy.load(folder, backend="ort") as ref, Policy.load(folder, backend="trt") as policy:
            tag, obs = _observations(policy, 1)
            expected = ref.get_action(obs, embodiment=tag, seed=5)
            before = _launches(state)
            with caplog.at_level("WARNING", logger="gr00t_trt.runtime.trt_backend"):
                runs = [policy.get_action(obs, embodiment=tag, seed=5) for _ in range(3)]
            for got in runs:
                for key in expected:
                    np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, atol=1e-5)
            assert _launches(state) == before
            (plan,) = policy.pipeline._plans.values()
            warnings = [r.getMessage() for r in caplog.records]
            assert len(warnings) == len(plan.programs)  # once per program, not per step
            assert all("cudaErrorStreamCaptureInvalidated (901)" in w and "plain enqueues" in w for w in warnings)
    finally:
        state.capture_fails = False
