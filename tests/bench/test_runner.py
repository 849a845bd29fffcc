"""run_benchmark: end to end agrees with an independent wall clock, warm-up is excluded, the first call
is reported apart, stage keys are read generically, bad counts are refused."""

from __future__ import annotations

import statistics
import time

import pytest

from gr00t_trt.base.errors import Gr00tTrtError
from gr00t_trt.bench.runner import END_TO_END, run_benchmark


def test_end_to_end_p50_agrees_with_independent_wall_clock(tiny_policy, tiny_observation):
    """After every measured call the progress callback times one more get_action with its own clock, so
    both series see the same machine load (robust on a shared machine); their medians agree within 10 %."""
    tag, obs = tiny_observation
    independent: list[float] = []

    def progress(phase: str, done: int, total: int) -> None:
        if phase == "measure":
            start = time.monotonic_ns()
            tiny_policy.predict(obs, embodiment=tag, seed=0)
            independent.append((time.monotonic_ns() - start) / 1e6)

    report = run_benchmark(tiny_policy, obs, iters=40, warmup=3, embodiment=tag, progress=progress, roofline=False)
    assert len(independent) == 40 == report.end_to_end.n
    assert report.end_to_end.p50 == pytest.approx(statistics.median(independent), rel=0.10)
    # the end-to-end figure is a wall clock around get_action, not a sum of stages
    stage_sum = sum(report.stages[k].p50 for k in ("preprocess", "pipeline", "decode"))
    assert report.end_to_end.p50 >= 0.9 * stage_sum


def test_first_call_warmup_and_progress(tiny_policy, tiny_observation):
    tag, obs = tiny_observation
    phases: list[tuple[str, int, int]] = []
    report = run_benchmark(tiny_policy, obs, iters=3, warmup=2, embodiment=tag,
                           progress=lambda *a: phases.append(a), roofline=False)
    assert [p for p in phases if p[0] != "first call"] == [("warm-up", 1, 2), ("warm-up", 2, 2),
                                                            ("measure", 1, 3), ("measure", 2, 3), ("measure", 3, 3)]
    assert len(report.samples[END_TO_END]) == 3 and all(len(v) == 3 for v in report.samples.values())
    assert report.first_call_ms > 0 and set(report.first_call_stages) == set(tiny_policy.last_timings)
    assert list(report.stages) == list(tiny_policy.last_timings)  # the policy's own order
    assert report.peak_rss_bytes > 0 and report.roofline is None
    h = report.header
    assert h["backend"] == "ort" and h["iters"] == 3 and h["warmup"] == 2 and h["steps"] == tiny_policy.manifest.steps
    assert h["shape_bucket"] >= h["seq_len"] and h["cameras"] == len(h["image_sizes"]) == 2


def test_new_stage_keys_appear_without_changes(tiny_policy, tiny_observation, monkeypatch):
    """The contract's detailed timings (state_encoder, denoise_k) are picked up in the policy's order."""
    tag, obs = tiny_observation
    original = type(tiny_policy).predict

    def detailed(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        head = self.last_timings.pop("action_head", 0.0)
        rest = {k: self.last_timings.pop(k) for k in ("pipeline", "decode", "total")}
        self.last_timings.update({"state_encoder": head / 5, **{f"denoise_{k}": head / 5 for k in range(4)}, **rest})
        return out

    monkeypatch.setattr(type(tiny_policy), "predict", detailed)
    report = run_benchmark(tiny_policy, obs, iters=2, warmup=0, embodiment=tag, device="thor")
    assert list(report.stages) == ["preprocess", "vision", "backbone", "dit_context", "state_encoder",
                                   "denoise_0", "denoise_1", "denoise_2", "denoise_3", "pipeline", "decode", "total"]
    ratios = report.measured_over_floor
    assert {"vision", "backbone", "denoise_3", "total"} <= set(ratios)
    assert ratios["total"] == pytest.approx(report.end_to_end.p50 / report.floors["total"].ms)


def test_bad_counts(tiny_policy, tiny_observation):
    tag, obs = tiny_observation
    with pytest.raises(Gr00tTrtError, match="iterations must be at least 1, got 0"):
        run_benchmark(tiny_policy, obs, iters=0, embodiment=tag)
    with pytest.raises(Gr00tTrtError, match="warm-up iterations must be 0 or more, got -1"):
        run_benchmark(tiny_policy, obs, iters=1, warmup=-1, embodiment=tag)
    with pytest.raises(Gr00tTrtError, match="unknown roofline device 'tpu'"):
        run_benchmark(tiny_policy, obs, iters=1, warmup=0, embodiment=tag, device="tpu")


def test_on_the_cpu_the_floor_is_this_machines_own(tiny_policy, tiny_observation, monkeypatch):
    """Without a known device, an ONNX Runtime CPU run is compared with this CPU's measured limits."""
    from gr00t_trt.bench import cpu_limits
    from gr00t_trt.bench.cpu_limits import measure_cpu_limits

    spec = measure_cpu_limits(1, gemm=96, stream_k=128, stream_n=256, repeats=1)
    assert spec.key == "cpu" and spec.memory_gbs > 0 and spec.tflops["fp32"] > 0
    assert "GFLOP/s" in spec.name and "GB/s" in spec.name
    monkeypatch.setattr(cpu_limits, "measure_cpu_limits", lambda threads: spec)
    tag, obs = tiny_observation
    report = run_benchmark(tiny_policy, obs, iters=2, warmup=0, embodiment=tag)
    assert report.device is spec
    assert {"vision", "backbone", "total"} <= set(report.floors)
    assert report.measured_over_floor["total"] == pytest.approx(report.end_to_end.p50 / report.floors["total"].ms)
