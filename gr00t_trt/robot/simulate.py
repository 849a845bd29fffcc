"""A simulated robot for sizing a ChunkRunner before it drives real hardware: a fixed-rate control loop and a
stand-in policy that follows a known smooth path, so every executed action can be checked against it.

``TrajectoryPolicy`` answers ``get_action(obs, options) -> (action, info)`` after a chosen delay with the
path from the observed tick on (the observation carries the tick: "conditioned through the state"),
optionally offset per chunk (two samples of a real policy disagree), and honours prefix conditioning as an
ideal flow-matching model with straight paths would: the weighted Euler steps from a seed row s towards the
row's target t end at s + w·(t − s), so overlap rows blend the prefix into its own path with Isaac-GR00T's
row weights (frozen rows stay the prefix). ``run_loop`` steps a runner at a
fixed period the way a robot's loop does: sleep to the next deadline, and a late tick moves the next
deadline instead of bursting to catch up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..runtime.prefix import FROZEN, OVERLAP, PREFIX, RAMP, plan_prefix


def trajectory(ticks: np.ndarray) -> np.ndarray:
    """A smooth 3-D path [len, 3] sampled per tick (steps of ~0.05 per tick)."""
    t = np.asarray(ticks, dtype=np.float64)[:, None] * 0.05
    return np.concatenate([np.sin(t), np.cos(0.7 * t), 0.1 * t], axis=1)


class TrajectoryPolicy:
    """The path from ``obs["tick"]`` on as a chunk ``{"arm": [1, H, 2], "gripper": [1, H, 1]}``, after
    ``delay_s``; ``noise`` is the standard deviation of a per-chunk offset. ``fail`` makes calls raise."""

    def __init__(self, horizon: int = 16, delay_s: float = 0.0, noise: float = 0.0, seed: int = 0) -> None:
        self.horizon, self.delay_s, self.noise = horizon, delay_s, noise
        self.fail = False
        self.calls: list[int] = []
        self.resets = 0
        self._rng = np.random.default_rng(seed)

    def get_action(self, obs: dict, options: dict | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        tick = int(obs["tick"])
        self.calls.append(tick)
        time.sleep(self.delay_s)
        if self.fail:
            raise ValueError("camera unplugged")
        path = trajectory(np.arange(tick, tick + self.horizon)) + self.noise * self._rng.standard_normal(3)
        info: dict[str, Any] = {"tick": tick}
        prefix = (options or {}).get(PREFIX)
        if prefix is not None:
            seed = np.concatenate([prefix["arm"][0], prefix["gripper"][0]], axis=1).astype(np.float64)  # [n, 3]
            plan = plan_prefix({k: v for k, v in options.items() if k in (OVERLAP, FROZEN, RAMP)}, len(seed),
                               self.horizon)
            w = plan.weights(1, self.horizon)[0, : plan.overlap, None]
            path[: plan.overlap] = seed[plan.start:plan.stop] + w * (path[: plan.overlap] - seed[plan.start:plan.stop])
            info["prefix"] = {"overlap": plan.overlap, "frozen": plan.frozen}
        return {"arm": path[None, :, :2].astype(np.float32), "gripper": path[None, :, 2:].astype(np.float32)}, info

    def reset(self, options: dict | None = None) -> dict:
        self.resets += 1
        return {}


def run_loop(runner: Any, ticks: int, period_s: float,
             observe: Callable[[int], dict] = lambda k: {"tick": np.array(k)}) -> np.ndarray:
    """Step ``runner`` ``ticks`` times at ``period_s``; the executed actions [ticks, D] (keys in sorted
    order, batch row 0)."""
    executed = []
    deadline = time.perf_counter()
    for k in range(ticks):
        action = runner.step(observe(k))
        executed.append(np.concatenate([np.asarray(action[key])[0] for key in sorted(action)]))
        deadline = max(deadline + period_s, time.perf_counter())
        time.sleep(max(0.0, deadline - time.perf_counter()))
    return np.array(executed, dtype=np.float64)
