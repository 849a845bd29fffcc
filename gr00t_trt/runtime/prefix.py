"""Prefix conditioning: real-time chunking without gradients, as Isaac-GR00T's N1.7 sampler does it.

A robot executing chunk k asks for chunk k+1 before k is finished. To make k+1 continue k, the first
``overlap`` rows of the initial noise are replaced by the not-yet-executed tail of k (in the model's
normalised action space) and every Euler update is weighted per row: 0 on the first ``frozen`` rows
(actions that will have run before the new chunk arrives: they stay exactly the old plan), a ramp
strictly inside (0, 1) over rows [frozen, overlap), 1 on the rest (free denoising).

The ramp is Isaac-GR00T's (its N1.7 action head's ``get_action_with_features``): with m = overlap − frozen
and r = ``rtc_ramp_rate``, row frozen + i (i = 0 … m−1) gets (1 − e^(−r·(i+1)/(m+1))) / (1 − e^(−r)),
the inner points of an exponential ramp from 0 to 1 normalised to end at 1. Its action head requires
every option (no defaults); ``DEFAULT_RAMP_RATE`` is ours.

The weights are a host input of the action decoder graph ([B, H], ``step_weight``), so the recorded
programs run unchanged with no extra host synchronisation per step. numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..base.errors import ObservationError

#: Isaac-GR00T's option names (``get_action(obs, options)``); ``prefix`` carries the actions themselves
OVERLAP, FROZEN, RAMP, VALID_HORIZON = "rtc_overlap_steps", "rtc_frozen_steps", "rtc_ramp_rate", "action_horizon"
PREFIX = "prefix"
PREFIX_OPTIONS = (PREFIX, OVERLAP, FROZEN, RAMP, VALID_HORIZON)
#: our default ramp rate (Isaac-GR00T's head has none; callers there pass e.g. 2 to 6)
DEFAULT_RAMP_RATE = 5.0


@dataclass(frozen=True)
class PrefixPlan:
    """Which rows of the new chunk come from the prefix and how strongly each is denoised.

    Rows [start, stop) of the given prefix seed rows [0, overlap) of the new chunk."""

    overlap: int
    frozen: int
    ramp_rate: float
    start: int
    stop: int

    def weights(self, batch: int, horizon: int) -> np.ndarray:
        """float32 [B, H]: 0 on frozen rows, the ramp over the rest of the overlap, 1 elsewhere."""
        return np.broadcast_to(row_weights(horizon, self.frozen, self.overlap, self.ramp_rate), (batch, horizon)).copy()

    def seed(self, noise: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """A copy of ``noise`` [B, H, Da] whose rows [0, overlap) are ``rows`` [B, overlap, ≤Da]: the chosen
        prefix rows [start, stop), normalised as rows 0 … overlap−1 (zero-padded to Da as the model's
        training targets are)."""
        x = noise.copy()
        x[:, : self.overlap, : rows.shape[2]] = rows
        x[:, : self.overlap, rows.shape[2]:] = 0.0
        return x


def row_weights(horizon: int, frozen: int, overlap: int, ramp_rate: float) -> np.ndarray:
    """float32 [H] per-row update weights (see the module docstring for the formula)."""
    w = np.ones(horizon, np.float64)
    w[:frozen] = 0.0
    ramp_rows = overlap - frozen
    if ramp_rows > 0:
        t = np.arange(1, ramp_rows + 1, dtype=np.float64) / (ramp_rows + 1)
        w[frozen:overlap] = -np.expm1(-ramp_rate * t) / max(-math.expm1(-ramp_rate), 1e-8)
    return w.astype(np.float32)


def plan_prefix(options: Mapping[str, Any], prefix_rows: int, horizon: int) -> PrefixPlan:
    """Check the RTC options against a prefix of ``prefix_rows`` rows and the embodiment's ``horizon``;
    one-line errors name the option and the allowed range.

    ``rtc_overlap_steps`` defaults to every prefix row (up to the horizon), ``rtc_frozen_steps`` to 0,
    ``rtc_ramp_rate`` to ``DEFAULT_RAMP_RATE``; ``action_horizon`` (Isaac-GR00T: the valid rows of the
    previous chunk given as prefix) defaults to ``prefix_rows``. The seed is the LAST ``overlap`` of the
    valid rows."""
    valid = _int_option(options, VALID_HORIZON, prefix_rows, 1, prefix_rows,
                        f"the prefix has {prefix_rows} rows")
    overlap = _int_option(options, OVERLAP, min(valid, horizon), 1, min(valid, horizon),
                          f"the prefix has {valid} valid rows and the chunk {horizon}")
    frozen = _int_option(options, FROZEN, 0, 0, overlap, f"{OVERLAP} is {overlap}")
    ramp = options.get(RAMP, DEFAULT_RAMP_RATE)
    if isinstance(ramp, bool) or not isinstance(ramp, int | float | np.integer | np.floating) or not (
            math.isfinite(ramp) and ramp > 0):
        raise ObservationError(f"option {RAMP} must be a finite number > 0, got {ramp!r}")
    return PrefixPlan(overlap, frozen, float(ramp), valid - overlap, valid)


def _int_option(options: Mapping[str, Any], name: str, default: int, low: int, high: int, why: str) -> int:
    value = options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or not low <= value <= high:
        raise ObservationError(f"option {name} must be an integer in {low}..{high} ({why}), got {value!r}")
    return int(value)


def check_prefix_options(options: Mapping[str, Any]) -> bool:
    """Whether ``options`` asks for prefix conditioning; the RTC sizes without a ``prefix`` are refused."""
    if options.get(PREFIX) is not None:
        return True
    stray = [name for name in (OVERLAP, FROZEN, RAMP) if options.get(name) is not None]
    if stray:
        raise ObservationError(f"options {', '.join(stray)} need the actions to continue: pass options['prefix'] = "
                               "{action key: [B, n, width]} (physical units, as get_action returns them)")
    return False
