"""--compare-reference: the PyTorch reference on the same observation and noise, interleaved or in its
own process; speed-ups per stage and end to end; the actions agree to fp32 rounding."""

from __future__ import annotations

import numpy as np
import pytest

from gr00t_trt.base.errors import Gr00tTrtError
from gr00t_trt.bench.reference import (
    agreement,
    choose_mode,
    compare_interleaved,
    compare_separate_process,
    ours_grouped,
)

FP32_ACTIONS = 1e-4  # architecture §7, physical actions at fp32


def test_interleaved(tiny_policy, tiny_observation, tiny_checkpoint, tmp_path):
    tag, obs = tiny_observation
    cmp = compare_interleaved(tiny_policy, tiny_checkpoint, obs, embodiment=tag, iters=2, warmup=1)
    assert cmp.mode == "interleaved" and cmp.iters == 2
    rows = cmp.rows()
    assert list(rows) == ["preprocess", "vision", "backbone", "action head", "decode", "end to end"]
    for row in rows.values():
        assert row["reference"] > 0 and row["ours"] > 0
        assert row["speedup"] == pytest.approx(row["reference"] / row["ours"])
    assert cmp.agreement["rel_l2"] < FP32_ACTIONS and cmp.agreement["cosine"] > 0.9999
    assert cmp.to_dict()["rows_p50_ms"]["end to end"]["speedup"] == rows["end to end"]["speedup"]


def test_separate_process(tiny_export, tiny_checkpoint, tiny_observation):
    from gr00t_trt.bench.runner import run_benchmark
    from gr00t_trt.runtime.policy import Policy

    tag, obs = tiny_observation
    policy = Policy.load(tiny_export, backend="ort")  # closed by the comparison before the reference loads
    report = run_benchmark(policy, obs, iters=2, warmup=0, embodiment=tag, roofline=False)
    cmp = compare_separate_process(report, policy, tiny_checkpoint, obs, embodiment=tag, iters=1, warmup=0,
                                   timeout=600)
    assert cmp.mode == "separate process"
    assert cmp.ours_e2e is report.end_to_end and cmp.reference_e2e.n == 1
    assert cmp.agreement["rel_l2"] < FP32_ACTIONS
    assert not policy.pipeline.backend.is_active


def test_helpers(tiny_checkpoint):
    timings = {"preprocess": 1.0, "vision": 2.0, "backbone": 3.0, "dit_context": 0.5, "state_encoder": 0.25,
               "denoise_0": 1.0, "denoise_1": 1.0, "pipeline": 9.0, "decode": 0.5, "total": 11.0}
    assert ours_grouped(timings)["action head"] == 2.75
    assert ours_grouped({"dit_context": 1.0, "action_head": 4.0})["action head"] == 5.0
    a = {"action.arm": np.ones((1, 2, 3))}
    assert agreement(a, {"arm": np.ones((1, 2, 3))}) == pytest.approx({"rel_l2": 0.0, "max_abs": 0.0, "cosine": 1.0})
    with pytest.raises(Gr00tTrtError, match="different action keys"):
        agreement(a, {"leg": np.ones((1, 2, 3))})
    assert choose_mode("auto", tiny_checkpoint) == "interleaved"  # a tiny reference always fits
    assert choose_mode("process", tiny_checkpoint) == "process"
    with pytest.raises(Gr00tTrtError, match="reference mode 'both' — expected one of: auto, interleaved, process"):
        choose_mode("both", tiny_checkpoint)
