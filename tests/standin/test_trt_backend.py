"""TrtBackend through the stand-in: parity with ONNX Runtime at fp32, CUDA-graph capture and replay across
two shape buckets, zero-copy buffers on integrated GPUs, backend="auto", refusals, orderly teardown."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import standin
from gr00t_trt.base.errors import BackendError
from gr00t_trt.contract.manifest import load_manifest
from gr00t_trt.engines.build import BuildOptions, build_engines
from gr00t_trt.processing.observations import synthetic_observation
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
            expected = ref.predict(obs, embodiment=tag, seed=7)
            before = _launches(state)
            runs = [policy.predict(obs, embodiment=tag, seed=7) for _ in range(3)]  # warm-up, capture, replay
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
        first = policy.predict(obs, embodiment=tag, seed=1)
        second = policy.predict(obs, embodiment=tag, seed=1)
        assert _launches(state) == before
        for key in first:
            np.testing.assert_array_equal(first[key], second[key])


def test_integrated_gpu_uses_mapped_zero_copy_buffers(trt_export):
    folder, state = trt_export
    state.integrated = True
    try:
        with Policy.load(folder, backend="ort") as ref, Policy.load(folder, backend="trt") as policy:
            tag, obs = _observations(policy, 1)
            expected = ref.predict(obs, embodiment=tag, seed=3)
            for _ in range(2):
                got = policy.predict(obs, embodiment=tag, seed=3)
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
    policy.predict(obs, embodiment=tag, seed=0)
    policy.predict(obs, embodiment=tag, seed=0)
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
            expected = ref.predict(obs, embodiment=tag, seed=5)
            before = _launches(state)
            with caplog.at_level("WARNING", logger="gr00t_trt.runtime.trt_backend"):
                runs = [policy.predict(obs, embodiment=tag, seed=5) for _ in range(3)]
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


# ------------------------------------------------------------------------------------------ issue 16
def _calls(state, name):
    return sum(1 for _owner, call in state.calls if call == name)


def _assert_same(got, want):
    assert got.keys() == want.keys()
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-5)


def test_every_bucket_every_call_with_new_inputs_and_a_quiet_steady_state(trt_export):
    """New observations and seeds every call, each compared with ONNX Runtime: a stale output, a graph
    replayed for the wrong bucket (bucket 2 starts after bucket 1's graphs replay), a late download or a
    default-stream enqueue fails here. Steady state (buckets interleaved): one graph launch per program, no
    event created, no pageable copy, no plain enqueue."""
    folder, state = trt_export
    with Policy.load(folder, backend="ort") as ref, Policy.load(folder, backend="trt") as policy:
        tag = sorted(policy.manifest.embodiments)[0]
        spec, sizes = policy.preprocessor.spec, policy.manifest.image_sizes
        state.pageable_copies = 0
        before = {}
        for i, batch in enumerate((1, 1, 1, 2, 2, 2, None, 1, 2, 1, 2)):  # warm-up, capture, replay per bucket
            if batch is None:  # steady state from here
                before = {n: _calls(state, n) for n in ("cudaGraphLaunch", "cudaEventCreate", "execute_async_v3")}
                continue
            obs = synthetic_observation(spec, tag, seed=i, batch=batch, image_sizes=sizes,
                                        instruction="pick up the cube")  # one instruction keeps the buckets
            _assert_same(policy.predict(obs, embodiment=tag, seed=i), ref.predict(obs, embodiment=tag, seed=i))
        programs = sum(len(p.programs) for p in policy.pipeline._plans.values())
        assert len(policy.pipeline._plans) == 2
        assert _calls(state, "cudaGraphLaunch") - before["cudaGraphLaunch"] == 2 * programs  # each bucket twice
        assert _calls(state, "cudaEventCreate") == before["cudaEventCreate"]  # the event pool is recycled
        assert _calls(state, "execute_async_v3") == before["execute_async_v3"]  # only replays
        assert state.pageable_copies == 0  # host mirrors are pinned


def test_each_engine_gets_an_activation_block_of_its_own_size(trt_export):
    folder, _state = trt_export
    with Policy.load(folder, backend="trt") as policy:
        tag, obs = _observations(policy, 1)
        policy.predict(obs, embodiment=tag, seed=0)
        engines = policy.pipeline.backend._engines
        sizes = {name: slot.engine.device_memory_size_v2 for name, slot in engines.items() if slot.activation}
        assert len(set(sizes.values())) > 1  # the stand-in gives each engine its own size
        assert all(engines[n].activation.nbytes == size for n, size in sizes.items())


def test_a_false_enqueue_raises_with_the_logged_error_and_never_leaves_a_capture_open(trt_export):
    from cuda.bindings import runtime as cudart

    folder, state = trt_export
    with Policy.load(folder, backend="ort") as ref, Policy.load(folder, backend="trt") as policy:
        tag, obs = _observations(policy, 1)
        want = ref.predict(obs, embodiment=tag, seed=4)
        for warm_up in (False, True):  # the plain (warm-up) path, then the capture path
            if warm_up:
                policy.predict(obs, embodiment=tag, seed=4)
            state.enqueue_fails = True
            try:
                with pytest.raises(BackendError, match=r"TensorRT failed to enqueue graph .*illegal memory access"):
                    policy.predict(obs, embodiment=tag, seed=4)
            finally:
                state.enqueue_fails = False
            assert not any(cudart.is_capturing(s) for s in list(cudart._streams))
        _assert_same(policy.predict(obs, embodiment=tag, seed=4), want)  # plain enqueues after the failed capture


def test_evicted_buckets_release_their_execution_contexts(trt_export):
    import gc

    import tensorrt as trt

    folder, _state = trt_export
    with Policy.load(folder, backend="trt") as policy:
        policy.pipeline.max_buckets = 1
        counts = []
        for batch in (1, 2, 1, 2):
            tag, obs = _observations(policy, batch)
            policy.predict(obs, embodiment=tag, seed=batch)
            gc.collect()
            counts.append(len(trt.IExecutionContext._live))
        assert counts[0] == counts[1] == counts[2] == counts[3]  # one bucket's contexts, not one more per bucket


def test_get_action_from_another_thread_runs_on_the_chosen_device(trt_export):
    import threading

    folder, state = trt_export
    state.device_count = 2
    try:
        with Policy.load(folder, backend="ort") as ref, Policy.load(folder, backend="trt", device_id=1) as policy:
            tag, obs = _observations(policy, 1)
            got = {}

            def serve(seed):
                got[seed] = policy.predict(obs, embodiment=tag, seed=seed)

            for seed in (1, 2):  # a server thread per request: neither has made device 1 current yet
                worker = threading.Thread(target=serve, args=(seed,))
                worker.start()
                worker.join()
                _assert_same(got[seed], ref.predict(obs, embodiment=tag, seed=seed))
    finally:
        state.device_count = 1


def test_releasing_a_buffer_waits_for_queued_work(trt_export):
    folder, _state = trt_export
    with Policy.load(folder, backend="trt") as policy:
        backend = policy.pipeline.backend
        buffer = backend.allocate("x", (4, 4), np.dtype(np.float32), host=True)
        buffer.host[...] = 1.0
        backend.upload(buffer)  # queued, not run yet
        backend.release(buffer)  # the stand-in refuses a free with work in flight


def test_a_modified_onnx_file_is_refused_at_load_even_with_engines(trt_export, tmp_path):
    from gr00t_trt.base.errors import ManifestError

    folder, _state = trt_export
    copy = shutil.copytree(folder, tmp_path / "export")
    onnx_file = next(f for f in sorted(copy.glob("*.onnx")))
    onnx_file.write_bytes(onnx_file.read_bytes() + b"\x32\x01x")  # a valid protobuf field (doc_string)
    with pytest.raises(ManifestError, match=rf"{onnx_file.name} does not match the manifest"):
        Policy.load(copy, backend="trt")


def test_plans_are_deserialised_from_a_memory_map_not_a_second_copy(trt_export):
    folder, state = trt_export
    before = len(state.calls)
    with Policy.load(folder, backend="trt") as policy:
        tag, obs = _observations(policy, 1)
        policy.predict(obs, embodiment=tag, seed=0)
    loads = [call for owner, call in state.calls[before:] if owner == "Runtime"]
    assert loads and set(loads) == {"deserialize_cuda_engine(mmap)"}


@pytest.mark.parametrize("content", [b"[]", b'{"format": "\xff"}', b"[" * 100_000])
def test_a_garbage_sidecar_falls_back_under_auto_and_is_one_line_under_trt(trt_export, tmp_path, content):
    """Issue 17: the sidecar is read bounded (read_json) and type-checked, never a crash."""
    from gr00t_trt.workflows.doctor import run_doctor

    folder, _state = trt_export
    copy = shutil.copytree(folder, tmp_path / "export")
    sidecar = next((copy / "engines").glob("*/dit.plan.json"))
    sidecar.write_bytes(content)
    with Policy.load(copy, backend="auto") as policy:
        assert policy.pipeline.backend.name == "ort"
    with pytest.raises(BackendError, match=rf"the trt backend cannot run .*{sidecar.name}") as err:
        Policy.load(copy, backend="trt")
    assert "engine sidecar" in str(err.value) and "\n" not in str(err.value)
    assert f"{sidecar}" in run_doctor(copy).value("engines")
