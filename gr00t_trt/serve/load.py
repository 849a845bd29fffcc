"""A bounded load test: several clients at once, each on its own thread and connection, each sending its own
requests; request latency percentiles, errors, and every answer kept for checking (a server must never
answer one client with another's observation). Used by tests/serve and benchmarks/robot_loop.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..base.errors import ServeError

MAX_CLIENTS = 32  # a load test on a robot's policy server, not a stress tool


@dataclass
class LoadReport:
    """What the clients saw: per-request latency (ms), errors, and the answers by (client, request)."""

    clients: int
    requests: int
    wall_s: float
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    answers: dict[tuple[int, int], Any] = field(default_factory=dict)

    def percentile(self, q: float) -> float | None:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else None

    def summary(self) -> dict[str, Any]:
        return {"clients": self.clients, "requests": self.requests, "errors": len(self.errors),
                "p50_ms": self.percentile(50), "p99_ms": self.percentile(99), "max_ms": max(self.latencies_ms, default=None),
                "throughput_per_s": len(self.latencies_ms) / self.wall_s if self.wall_s else None}


def run_load(connect: Callable[[], Any], requests: Sequence[Sequence[tuple[dict, dict | None]]],
             timeout_s: float = 120.0) -> LoadReport:
    """``requests[i]`` are client ``i``'s ``(observation, options)`` pairs, sent one after another on the
    client ``connect()`` makes (anything with ``get_action(obs, options) -> (action, info)`` and ``close()``).
    All clients start together (a barrier); an exception is an error, recorded, and the client goes on."""
    if not 1 <= len(requests) <= MAX_CLIENTS:
        raise ServeError(f"a load test runs 1..{MAX_CLIENTS} clients, got {len(requests)}")
    report = LoadReport(clients=len(requests), requests=sum(len(r) for r in requests), wall_s=0.0)
    lock = threading.Lock()
    start = threading.Barrier(len(requests) + 1)

    def client_thread(index: int) -> None:
        client = None
        try:
            client = connect()
        except Exception as exc:
            with lock:
                report.errors.append(f"client {index}: cannot connect — {exc}")
        try:
            start.wait(timeout_s)
        except threading.BrokenBarrierError:
            return
        if client is None:
            return
        try:
            for j, (obs, options) in enumerate(requests[index]):
                began = time.perf_counter()
                try:
                    action, _info = client.get_action(obs, options)
                except Exception as exc:
                    with lock:
                        report.errors.append(f"client {index} request {j}: {type(exc).__name__}: {exc}")
                    continue
                elapsed = (time.perf_counter() - began) * 1e3
                with lock:
                    report.latencies_ms.append(elapsed)
                    report.answers[(index, j)] = action
        finally:
            client.close()

    threads = [threading.Thread(target=client_thread, args=(i,), name=f"load-client-{i}", daemon=True)
               for i in range(len(requests))]
    for thread in threads:
        thread.start()
    start.wait(timeout_s)
    began = time.perf_counter()
    for thread in threads:
        thread.join(timeout_s)
    report.wall_s = time.perf_counter() - began
    stuck = [t.name for t in threads if t.is_alive()]
    if stuck:
        report.errors.append(f"clients still running after {timeout_s:g} s: {', '.join(stuck)}")
    return report
