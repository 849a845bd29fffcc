"""Latency statistics agree with numpy and refuse empty input."""

from __future__ import annotations

import numpy as np
import pytest

from gr00t_trt.bench.stats import percentile, summarize


def test_summary_matches_numpy():
    rng = np.random.default_rng(0)
    samples = list(rng.gamma(2.0, 3.0, size=257))
    s = summarize(samples)
    assert s.n == 257
    for name, q in (("p50", 50), ("p90", 90), ("p99", 99)):
        assert getattr(s, name) == pytest.approx(np.percentile(samples, q), rel=1e-12)
    assert s.mean == pytest.approx(np.mean(samples), rel=1e-12)
    assert s.std == pytest.approx(np.std(samples, ddof=1), rel=1e-12)
    assert (s.min, s.max) == (min(samples), max(samples))
    assert s.hz == pytest.approx(1e3 / s.p50)
    assert set(s.to_dict()) == {"n", "p50", "p90", "p99", "mean", "std", "min", "max", "hz"}


def test_order_does_not_matter_and_single_sample():
    assert summarize([3.0, 1.0, 2.0]).p50 == 2.0
    one = summarize([4.0])
    assert (one.p50, one.p99, one.std, one.hz) == (4.0, 4.0, 0.0, 250.0)


def test_bad_input():
    with pytest.raises(ValueError, match="empty"):
        summarize([])
    with pytest.raises(ValueError, match="0..100"):
        percentile([1.0], 101)
