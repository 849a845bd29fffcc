"""The robot's control loop over action chunks: one action per control tick, the next chunk computed meanwhile.

A policy answers a chunk of ``H`` actions per call, far slower than a control tick. ``ChunkRunner.step(obs)``
hands out the current chunk one action at a time; when the unexecuted part falls to ``threshold · H``
actions (LeRobot's ``chunk_size_threshold``) a background thread asks the policy for the next chunk with the
newest observation, so the robot keeps moving while it is computed. Any object with Isaac-GR00T's
``get_action(observation, options) -> (action, info)`` works: an in-process ``Policy`` or a ``PolicyClient``.

How a new chunk takes over (``align``):
- ``"arrival"``: it starts at its first action when it arrives (openpi's chunk broker, Isaac-GR00T's eval
  loop). Never starves while the inference delay stays under ``threshold · H`` ticks; the executed actions
  lag their observation by that delay.
- ``"time"``: the actions whose tick passed during inference are dropped, so action ``i`` of a chunk runs
  ``i`` ticks after its observation (LeRobot's aggregation, real-time chunking). Each inference then yields
  only ``H − delay`` fresh actions: it starves whenever the delay exceeds half the chunk.
``handover="crossfade"`` blends the rest of the old chunk into the start of the new one (linear weights over
their overlap) instead of replacing it: temporal smoothing without the model's help.

Prefix conditioning (``rtc=True``, real-time chunking): each request carries the executing chunk's rows that
the new chunk will replace, as ``options["prefix"]`` with Isaac-GR00T's ``rtc_overlap_steps`` /
``rtc_frozen_steps`` (``Policy.get_action``), so the policy continues the old plan instead of sampling a new
one from scratch. Which rows, depending on ``align``:
- ``"time"``: the whole unexecuted tail at the request (its row i is tick request + i, as the new chunk's);
  frozen = the last measured delay d (those rows run before the new chunk arrives and are dropped then).
- ``"arrival"``: the new chunk starts when it arrives, about d ticks after the request, so its row i stands
  for the old tail's row d + i: the prefix is the tail from row d on; 1 row frozen (``rtc_frozen``) pins
  the first executed action of the new chunk to the one the old chunk would have executed.
The rest of the overlap is ramped (``rtc_ramp_rate``); ``rtc_overlap`` caps the rows passed.

numpy and the standard library only (robot computers need neither torch nor onnxruntime).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..base.errors import RunnerError

ALIGNS = ("arrival", "time")
HANDOVERS = ("replace", "crossfade")


@dataclass(frozen=True)
class ChunkRecord:
    """One chunk's story: when it was asked for and arrived (in control ticks), how long inference took, and
    the jump between the last action executed before it and its first executed action (L2, all keys)."""

    index: int
    requested_tick: int
    arrived_tick: int
    delay_ticks: int
    latency_ms: float
    prefix_len: int  # the old chunk's unexecuted actions at the request (the future prefix)
    frozen: int | None  # the delay estimate handed to _infer (ticks; None: none measured yet)
    discontinuity: float | None  # None for the first chunk (nothing executed before it)
    #: L2 between the chunk's first executed action and the one the old chunk had planned for that tick (None:
    #: the old chunk had run out): how far the new chunk departs from the plan it replaces
    plan_gap: float | None = None


@dataclass
class _Request:
    obs: dict
    tick: int
    generation: int
    prefix: np.ndarray | None
    frozen: int | None
    conditioning: dict[str, Any]  # the prefix options passed with it (rtc), or {}
    shift: int | None  # with a prefix: the row of ``prefix`` the new chunk's first row stands for


class ChunkRunner:
    """``step(obs) -> action`` at control rate from a queue of the current chunk; see the module docstring.

    ``step`` returns ``{key: array[B, width]}`` (the chunk's ``[B, H, width]`` at one tick). It blocks only
    when the queue is empty: for the first chunk, after ``reset()``, or when inference is too slow (a
    *starved* tick, counted in ``starved_ticks``). ``records`` lists every chunk (``ChunkRecord``).
    Use it as a context manager, or call ``close()``: the background thread ends and is joined.
    """

    def __init__(self, policy: Any, *, threshold: float = 0.5, align: str = "arrival", handover: str = "replace",
                 options: dict[str, Any] | None = None, timeout_s: float = 60.0, rtc: bool = False,
                 rtc_overlap: int | None = None, rtc_frozen: int | None = None,
                 rtc_ramp_rate: float | None = None) -> None:
        if not 0.0 <= threshold < 1.0:
            raise RunnerError(f"threshold must be a fraction of the chunk in [0, 1), got {threshold!r}")
        if align not in ALIGNS:
            raise RunnerError(f"unknown align {align!r} — expected one of: {', '.join(ALIGNS)}")
        if handover not in HANDOVERS:
            raise RunnerError(f"unknown handover {handover!r} — expected one of: {', '.join(HANDOVERS)}")
        for name, value, low in (("rtc_overlap", rtc_overlap, 1), ("rtc_frozen", rtc_frozen, 0)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                raise RunnerError(f"{name} must be an integer ≥ {low} or None, got {value!r}")
        if rtc_ramp_rate is not None and not (isinstance(rtc_ramp_rate, int | float) and rtc_ramp_rate > 0):
            raise RunnerError(f"rtc_ramp_rate must be a number > 0 or None, got {rtc_ramp_rate!r}")
        if not callable(getattr(policy, "get_action", None)):
            raise RunnerError(f"the policy must have get_action(observation, options) -> (action, info), got a "
                              f"{type(policy).__name__}")
        self.policy, self.threshold, self.align, self.handover = policy, threshold, align, handover
        self.options, self.timeout_s = dict(options or {}), timeout_s
        self.rtc, self.rtc_overlap, self.rtc_frozen, self.rtc_ramp_rate = rtc, rtc_overlap, rtc_frozen, rtc_ramp_rate
        self.records: list[ChunkRecord] = []
        self.starved_ticks = 0
        self.ticks = 0
        self.last_info: dict[str, Any] = {}
        self._cond = threading.Condition()
        self._calls = threading.Lock()  # one policy call at a time: a PolicyClient's socket is not thread-safe
        self._queue: deque[np.ndarray] = deque()  # [B, D] rows of the current chunk, next first
        self._layout: list[tuple[str, int]] | None = None  # (key, width) in the order of the stacked D
        self._horizon = 0
        self._request: _Request | None = None
        self._inflight = False
        self._generation = 0  # bumped by reset(): a chunk asked for earlier is dropped on arrival
        self._error: BaseException | None = None
        self._last_action: np.ndarray | None = None
        self._delay_ticks: int | None = None  # measured at the last hand-over the robot kept moving through
        self._started_episode = False  # a chunk has arrived since the last reset (later waits are starvation)
        self._stopping = False
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ the control tick
    def step(self, obs: dict) -> dict[str, np.ndarray]:
        """The action for this tick; asks for the next chunk in the background when the queue runs low."""
        with self._cond:
            self._raise_if_failed()
            if self._stopping:
                raise RunnerError("this ChunkRunner was closed — make a new one to keep stepping")
            self._ensure_thread()
            low = len(self._queue) <= self._refill_at()
            if low and not self._inflight and self._request is None:
                self._ask(obs)
            if not self._queue:
                if self._started_episode:
                    self.starved_ticks += 1
                deadline = time.monotonic() + self.timeout_s
                while not self._queue and self._error is None and not self._stopping:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise RunnerError(f"no action chunk within {self.timeout_s:g} s — is the policy (server) "
                                          "running? (timeout_s= sets the wait)")
                    self._cond.wait(left)
                self._raise_if_failed()
                if self._stopping:
                    raise RunnerError("this ChunkRunner was closed while waiting for a chunk")
            action = self._queue.popleft()
            self._last_action = action
            self.ticks += 1
            return self._split(action)

    def _refill_at(self) -> int:
        return int(self.threshold * self._horizon)  # 0 before the first chunk: ask when empty

    def _ask(self, obs: dict) -> None:
        """Queue one request for the worker (lock held): the observation, and the future prefix."""
        prefix = np.stack(self._queue) if self._queue else None
        conditioning, shift = {}, None
        if self.rtc and prefix is not None and self._delay_ticks is not None:
            conditioning, shift = self.prefix_options(prefix, self._delay_ticks)
        self._request = _Request(obs, self.ticks, self._generation, prefix, self._delay_ticks, conditioning, shift)
        self._cond.notify_all()

    # ------------------------------------------------------------------ the background inference
    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="gr00t-trt-chunk-runner", daemon=True)
            self._thread.start()

    def _work(self) -> None:
        while True:
            with self._cond:
                while self._request is None and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                request, self._request, self._inflight = self._request, None, True
            start = time.perf_counter()
            try:
                with self._calls:
                    action, info = self._infer(request.obs, request.conditioning)
                chunk = self._stack(action)
            except BaseException as exc:  # handed to the control thread, which raises it from step()
                with self._cond:
                    self._error, self._inflight = exc, False
                    self._cond.notify_all()
                return
            latency_ms = (time.perf_counter() - start) * 1e3
            with self._cond:
                self._inflight = False
                if request.generation == self._generation and not self._stopping:
                    self._install(chunk, request, latency_ms)
                    self.last_info = info if isinstance(info, dict) else {}
                self._cond.notify_all()

    def _infer(self, obs: dict, conditioning: dict[str, Any] | None = None) -> tuple[dict, dict]:
        """The one call to the policy, with the prefix options of the request (``prefix_options``)."""
        result = self.policy.get_action(obs, {**self.options, **(conditioning or {})})
        if not isinstance(result, tuple) or len(result) != 2:
            raise RunnerError(f"get_action must return (action, info) — got {type(result).__name__}; an in-process "
                              "Policy and a PolicyClient both do")
        return result

    def prefix_options(self, tail: np.ndarray, delay: int) -> tuple[dict[str, Any], int | None]:
        """(prefix options, shift) of one request from the unexecuted tail [n, B, D] at the request and the
        delay estimate (ticks); shift is the tail row the new chunk's row 0 stands for (None and no options
        when no row of the old chunk is left to continue). No prefix before a delay was measured (``_ask``):
        its rows could not be placed."""
        shift = 0 if self.align == "time" else delay
        rows = tail[shift:]
        if self.rtc_overlap is not None:
            rows = rows[: self.rtc_overlap]
        if not len(rows):
            return {}, None
        frozen = self.rtc_frozen if self.rtc_frozen is not None else delay if self.align == "time" else 1
        options: dict[str, Any] = {"prefix": self._unstack(rows), "rtc_overlap_steps": len(rows),
                                   "rtc_frozen_steps": min(frozen, len(rows))}
        if self.rtc_ramp_rate is not None:
            options["rtc_ramp_rate"] = self.rtc_ramp_rate
        return options, shift

    def _install(self, chunk: np.ndarray, request: _Request, latency_ms: float) -> None:
        """Hand over to a new chunk [H, B, D] (lock held)."""
        delay = self.ticks - request.tick
        if request.prefix is not None:  # the robot ran on the old chunk meanwhile: a real delay
            self._delay_ticks = delay
        if request.shift is not None:
            fresh = self._continue(chunk, delay - request.shift)
        else:
            fresh = chunk[delay:] if self.align == "time" else chunk
        if self.handover == "crossfade" and self._queue and request.shift is None:
            fresh = fresh.copy()
            overlap = min(len(self._queue), len(fresh))
            for j, old in zip(range(overlap), self._queue, strict=False):
                keep = 1.0 - (j + 1) / (overlap + 1)
                fresh[j] = keep * old + (1.0 - keep) * fresh[j]
        jump = gap = None
        if self._last_action is not None and len(fresh):
            jump = float(np.linalg.norm(fresh[0] - self._last_action))
        if self._queue and len(fresh):
            gap = float(np.linalg.norm(fresh[0] - self._queue[0]))
        self._queue = deque(fresh)
        self._started_episode = True
        self.records.append(ChunkRecord(len(self.records), request.tick, self.ticks, delay, latency_ms,
                                        0 if request.prefix is None else len(request.prefix), request.frozen, jump,
                                        gap))

    def _continue(self, chunk: np.ndarray, late: int) -> np.ndarray:
        """A prefix-conditioned chunk placed where its prefix was (lock held): its row 0 stands for the old
        tail's row ``shift``, which the robot reaches ``late`` ticks before now (drop that many of its rows)
        or ``-late`` ticks from now (finish those old rows first), so the hand-over is exact whatever the
        delay turned out to be."""
        if late >= 0:
            return chunk[late:]
        pending = list(self._queue)[:-late]
        return np.concatenate([np.stack(pending), chunk]) if pending else chunk

    # ------------------------------------------------------------------ chunk layout
    def _stack(self, action: dict) -> np.ndarray:
        """{key: [B, H, w]} -> [H, B, sum w] float64, checking every chunk has the first one's keys and widths."""
        if not isinstance(action, dict) or not action:
            raise RunnerError(f"expected an action chunk {{key: array[B, H, width]}}, got {type(action).__name__}")
        layout, parts = [], []
        for key in sorted(action):
            value = np.asarray(action[key])
            if value.ndim != 3:
                raise RunnerError(f"action {key!r} has shape {value.shape} — expected [B, H, width]")
            layout.append((key, value.shape[2]))
            parts.append(value.astype(np.float64))
        if len({p.shape[:2] for p in parts}) != 1:
            raise RunnerError(f"action keys disagree on [B, H]: {[(k, p.shape) for (k, _), p in zip(layout, parts, strict=True)]}")
        with self._cond:
            if self._layout is None:
                self._layout, self._horizon = layout, parts[0].shape[1]
            elif layout != self._layout or parts[0].shape[1] != self._horizon:
                raise RunnerError(f"the policy changed its action layout from {self._layout} (horizon "
                                  f"{self._horizon}) to {layout} (horizon {parts[0].shape[1]})")
        return np.concatenate(parts, axis=2).transpose(1, 0, 2)

    def _unstack(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """[n, B, D] -> {key: float32 [B, n, width]}, the layout the policy answered in."""
        out, at = {}, 0
        for key, width in self._layout:
            out[key] = np.ascontiguousarray(rows[:, :, at:at + width].transpose(1, 0, 2), dtype=np.float32)
            at += width
        return out

    def _split(self, row: np.ndarray) -> dict[str, np.ndarray]:
        out, at = {}, 0
        for key, width in self._layout:
            out[key] = row[:, at:at + width].astype(np.float32)
            at += width
        return out

    # ------------------------------------------------------------------ lifecycle
    def _raise_if_failed(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            self._thread = None  # the worker ended with the failure; the next step starts a new one
            raise RunnerError(f"the background inference failed — {type(error).__name__}: {error}") from error

    def reset(self) -> None:
        """A new episode: drop the queue, the last action, the delay estimate and any chunk still being
        computed (it is discarded on arrival); the policy's own ``reset()`` is called too, after a call under
        way has returned (a client's connection carries one request at a time)."""
        with self._cond:
            self._generation += 1
            self._queue.clear()
            self._request, self._last_action, self._delay_ticks = None, None, None
            self._started_episode = False
        reset = getattr(self.policy, "reset", None)
        if callable(reset):
            with self._calls:
                reset()

    def close(self) -> None:
        """Stop the background thread and wait for it (an inference under way finishes first)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.timeout_s)

    stop = close

    def __enter__(self) -> ChunkRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def summary(self) -> dict[str, Any]:
        """Counts and percentiles over the recorded chunks (what the benchmark prints)."""
        jumps = [r.discontinuity for r in self.records if r.discontinuity is not None]
        gaps = [r.plan_gap for r in self.records if r.plan_gap is not None]
        latency = [r.latency_ms for r in self.records]
        delays = [r.delay_ticks for r in self.records[1:]]

        def pct(values: list[float], q: float) -> float | None:
            return float(np.percentile(values, q)) if values else None

        return {"ticks": self.ticks, "chunks": len(self.records), "starved_ticks": self.starved_ticks,
                "latency_ms_p50": pct(latency, 50), "latency_ms_p99": pct(latency, 99),
                "delay_ticks_max": max(delays) if delays else None,
                "discontinuity_mean": float(np.mean(jumps)) if jumps else None,
                "discontinuity_max": max(jumps) if jumps else None,
                "plan_gap_mean": float(np.mean(gaps)) if gaps else None}
