"""Latency statistics: percentiles, mean, spread and the control frequency they allow."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

#: the order in which statistics are shown everywhere (console, markdown, JSON keys)
STAT_FIELDS = ("p50", "p90", "p99", "mean", "std", "min", "max")


@dataclass(frozen=True)
class LatencyStats:
    """Summary of latency samples in milliseconds; ``hz`` is the control rate the median allows."""

    n: int
    p50: float
    p90: float
    p99: float
    mean: float
    std: float
    min: float
    max: float

    @property
    def hz(self) -> float:
        return 1e3 / self.p50 if self.p50 > 0 else math.inf

    def to_dict(self) -> dict[str, float]:
        return {**asdict(self), "hz": self.hz}


def percentile(sorted_samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between order statistics (numpy's
    default), of samples already sorted ascending."""
    if not sorted_samples:
        raise ValueError("percentile of no samples")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be within 0..100, got {q}")
    pos = (len(sorted_samples) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_samples) - 1)
    frac = pos - lo
    return sorted_samples[lo] + (sorted_samples[hi] - sorted_samples[lo]) * frac


def summarize(samples_ms: Sequence[float]) -> LatencyStats:
    """Statistics of one series of samples (ms). ``std`` is the sample standard deviation (n − 1)."""
    values = sorted(float(v) for v in samples_ms)
    if not values:
        raise ValueError("cannot summarise an empty series of samples")
    n = len(values)
    mean = math.fsum(values) / n
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return LatencyStats(
        n=n,
        p50=percentile(values, 50),
        p90=percentile(values, 90),
        p99=percentile(values, 99),
        mean=mean,
        std=math.sqrt(var),
        min=values[0],
        max=values[-1],
    )
