"""Robot-loop benchmark: a 50 Hz control loop fed by ChunkRunner while inference takes 60 % of a chunk, and a
several-client load test of both serving protocols.

1. **simulated**: ``TrajectoryPolicy`` (a known smooth path conditioned through the observed tick, a
   per-chunk offset standing for sampling noise) answering after 60 % of the chunk's duration; the loop runs
   ``--ticks`` ticks at ``--hz`` in real time, with the new chunk starting on arrival (replaced, or
   crossfaded, or prefix-conditioned: ``rtc``) and aligned in time (stale actions dropped: starves past half
   a chunk); reports starved ticks, per-chunk latency and delay, the hand-over discontinuity (L2 jump
   between the last executed action and the first of the next chunk) and the largest step of the whole run
   (a jump moved inside the chunk would show there).
2. **tiny export**: the same loop on a real tiny export in-process (ONNX Runtime), each call padded with
   sleep up to 60 % of the chunk's duration (the compute time itself is reported), without and with prefix
   conditioning.
3. **load**: the tiny export served over ZeroMQ and openpi's websocket protocol on loopback, ``--clients``
   clients at once, ``--requests`` each: p50/p99 request latency and errors.

    python benchmarks/robot_loop.py                      # builds a tiny export in a temp dir (~1-2 min)
    python benchmarks/robot_loop.py --export DIR --out benchmarks/results/robot_loop

Writes ``<out>.json`` and ``<out>.md``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import shlex
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from gr00t_trt.base.files import write_atomic, write_json
from gr00t_trt.robot import ChunkRunner
from gr00t_trt.robot.simulate import TrajectoryPolicy, run_loop

EMBODIMENT = "unitree_g1"


class PaddedPolicy:
    """A Policy whose calls take at least ``delay_s`` (sleeping after the real computation); keeps the compute
    times."""

    def __init__(self, policy, delay_s: float) -> None:
        self.policy, self.delay_s, self.compute_ms = policy, delay_s, []

    def get_action(self, obs, options=None):
        start = time.perf_counter()
        result = self.policy.get_action(obs, options)
        elapsed = time.perf_counter() - start
        self.compute_ms.append(elapsed * 1e3)
        time.sleep(max(0.0, self.delay_s - elapsed))
        return result

    def reset(self, options=None):
        return self.policy.reset()


class FollowingRobot:
    """A robot that reaches every commanded position by the next tick: the observed state of each relative
    action's reference key is the last executed action (the task is conditioned through the state, as a
    real arm's is)."""

    def __init__(self, runner: ChunkRunner, observation: dict, spec) -> None:
        self.runner, self.observation, self.last = runner, observation, None
        self.references = {key: spec.action_configs[key].state_key for key in spec.action_keys if spec.is_relative(key)}

    def step(self, obs: dict) -> dict:
        self.last = self.runner.step(obs)
        return self.last

    def observe(self, tick: int) -> dict:
        if self.last is None:
            return self.observation
        state = dict(self.observation["state"])
        for key, reference in self.references.items():
            state[reference] = self.last[key][:, None, :].astype(np.float32)
        return {**self.observation, "state": state}


def loop_result(runner: ChunkRunner, executed: np.ndarray, wall_s: float) -> dict:
    out = runner.summary()
    out["wall_s"] = wall_s
    steps = np.linalg.norm(np.diff(executed, axis=0), axis=1) if len(executed) > 1 else np.zeros(0)
    out["step_l2_median"] = float(np.median(steps)) if len(steps) else None  # an ordinary tick's motion
    first = runner.records[1].arrived_tick if len(runner.records) > 1 else len(executed)  # after the first hand-over
    later = steps[first - 1:]
    out["step_l2_max"] = float(later.max()) if len(later) else None
    out["step_l2_p99"] = float(np.percentile(later, 99)) if len(later) else None
    out["delay_ticks_median"] = float(np.median([r.delay_ticks for r in runner.records[1:]])) if len(runner.records) > 1 else None
    return out


def simulated(args, horizon: int = 16) -> dict:
    period = 1.0 / args.hz
    results = {}
    for align, handover, rtc in (("arrival", "replace", False), ("arrival", "crossfade", False),
                                 ("arrival", "replace", True), ("time", "replace", False), ("time", "replace", True)):
        policy = TrajectoryPolicy(horizon=horizon, delay_s=args.delay_fraction * horizon * period, noise=args.noise)
        with ChunkRunner(policy, threshold=args.threshold, align=align, handover=handover, rtc=rtc) as runner:
            start = time.perf_counter()
            executed = run_loop(runner, args.ticks, period)
            name = f"align={align}, handover={handover}" + (", rtc" if rtc else "")
            results[name] = loop_result(runner, executed, time.perf_counter() - start)
        print(f"simulated {name}: {results[name]}", flush=True)
    return results


def tiny_export(args, workdir: Path) -> Path:
    if args.export:
        return Path(args.export)
    from gr00t_trt.export.driver import ExportOptions, export_checkpoint
    from gr00t_trt.families.n16.synthetic import make_checkpoint

    print("building a tiny export ...", flush=True)
    checkpoint = make_checkpoint(workdir / "ckpt", "tiny", seed=0)
    out = workdir / "export"
    export_checkpoint(checkpoint, out, ExportOptions())
    return out


def real_loop(args, policy, observation, rtc: bool = False) -> dict:
    horizon = policy.preprocessor.spec.embodiment(EMBODIMENT).action_horizon
    period = 1.0 / args.hz
    padded = PaddedPolicy(policy, args.delay_fraction * horizon * period)
    with ChunkRunner(padded, threshold=args.threshold, options={"embodiment": EMBODIMENT}, rtc=rtc) as runner:
        robot = FollowingRobot(runner, observation, policy.preprocessor.spec.embodiment(EMBODIMENT))
        start = time.perf_counter()
        executed = run_loop(robot, args.ticks, period, observe=robot.observe)
        out = loop_result(runner, executed, time.perf_counter() - start)
    out["horizon"] = horizon
    out["compute_ms_median"] = float(np.median(padded.compute_ms))
    out["padded_to_ms"] = padded.delay_s * 1e3
    print(f"tiny export{' rtc' if rtc else ''}: {out}", flush=True)
    return out


def load(args, policy, observation) -> dict:
    from gr00t_trt.serve.client import PolicyClient
    from gr00t_trt.serve.core import ServerOptions
    from gr00t_trt.serve.load import run_load
    from gr00t_trt.serve.openpi import OpenpiServer
    from gr00t_trt.serve.openpi_client import OpenpiClient
    from gr00t_trt.serve.server import PolicyServer

    options = ServerOptions(host="127.0.0.1", port=0, embodiment=EMBODIMENT, max_clients=args.clients)
    requests = [[(observation, {"seed": 100 * i + j}) for j in range(args.requests)] for i in range(args.clients)]
    results = {}
    for protocol in ("zmq", "openpi"):
        server = PolicyServer(policy, options) if protocol == "zmq" else OpenpiServer(policy, options)
        thread = threading.Thread(target=server.serve, daemon=True)
        thread.start()
        try:
            port = server.port
            connect = ((lambda: PolicyClient("127.0.0.1", port, timeout_ms=120000)) if protocol == "zmq"  # noqa: B023
                       else (lambda: OpenpiClient("127.0.0.1", port, timeout_s=120)))  # noqa: B023
            report = run_load(connect, requests)
        finally:
            server.stop()
            thread.join(10)
            server.close()
        results[protocol] = report.summary()
        results[protocol]["first_errors"] = report.errors[:3]
        print(f"load {protocol}: {results[protocol]}", flush=True)
    return results


def markdown(result: dict) -> str:
    a = result["args"]
    lines = [f"# Robot loop — {a['hz']} Hz, inference {a['delay_fraction']:.0%} of a chunk, threshold {a['threshold']}",
             "", f"`{result['command']}` — {result['date']}, {result['machine']}", "",
             "| loop | chunks | starved ticks | latency p50 / p99 ms | delay ticks (median / max) | jump mean / max "
             "| ordinary step | largest step (p99 / max) | plan gap |",
             "|---|---|---|---|---|---|---|---|---|"]
    rows = [(f"simulated, {k}", v) for k, v in result["simulated"].items()]
    if "tiny_export" in result:
        rows.append(("tiny export (ORT), align=arrival, handover=replace", result["tiny_export"]))
    if "tiny_export_rtc" in result:
        rows.append(("tiny export (ORT), align=arrival, handover=replace, rtc", result["tiny_export_rtc"]))
    for name, r in rows:
        lines.append(f"| {name} | {r['chunks']} | {r['starved_ticks']} | {r['latency_ms_p50']:.1f} / {r['latency_ms_p99']:.1f} "
                     f"| {r['delay_ticks_median']:.0f} / {r['delay_ticks_max']} | {r['discontinuity_mean']:.4f} / "
                     f"{r['discontinuity_max']:.4f} | {r['step_l2_median']:.4f} | {r['step_l2_p99']:.4f} / "
                     f"{r['step_l2_max']:.4f} | {r['plan_gap_mean']:.4f} |")
    sim = result["simulated"]
    plain, rtc = sim.get("align=arrival, handover=replace"), sim.get("align=arrival, handover=replace, rtc")
    ratio = (f" Prefix conditioning (rtc: the unexecuted rows passed as prefix, Isaac-GR00T's ramp) / replacing, "
             f"mean jump on the simulated task: {rtc['discontinuity_mean'] / plain['discontinuity_mean']:.2f}x."
             if plain and rtc else "")
    lines += ["", "Jump: L2 between the last executed action and the first action of the next chunk. Ordinary "
              "step: median L2 between consecutive actions; largest step: over every tick after the first "
              "hand-over; plan gap: mean L2 between a new chunk's first executed action and the action the old "
              "chunk had planned for that tick." + ratio, ""]
    if "tiny_export" in result:
        t = result["tiny_export"]
        lines += [f"Tiny export: horizon {t['horizon']}, compute {t['compute_ms_median']:.1f} ms per chunk, padded to "
                  f"{t['padded_to_ms']:.0f} ms; the observed state follows the executed actions (relative actions "
                  "stay inside their statistics). Its weights are random, so its actions follow no smooth path and "
                  "an ordinary step is as large as a hand-over jump; what prefix conditioning changes there is the "
                  "plan gap: the new chunk continues the old plan instead of departing from it.", ""]
    if "load" in result:
        lines += ["| protocol | clients × requests | errors | p50 ms | p99 ms | requests/s |", "|---|---|---|---|---|---|"]
        for protocol, r in result["load"].items():
            lines.append(f"| {protocol} | {r['clients']} × {r['requests'] // r['clients']} | {r['errors']} | "
                         f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['throughput_per_s']:.1f} |")
    lines += ["", f"Load average (1 min) before / after: {result['loadavg'][0]:.1f} / {result['loadavg'][1]:.1f} "
              "(2 cores shared with other work: latencies are upper bounds)."]
    return "\n".join(lines) + "\n"


def machine() -> str:
    """CPU, usable threads, architecture and the versions that matter for these numbers."""
    from gr00t_trt.bench.machine import cpu_model, package_version, usable_threads

    return (f"{cpu_model()}, {usable_threads()} usable threads, {platform.machine()}, Python "
            f"{platform.python_version()}, numpy {np.__version__}, onnxruntime {package_version('onnxruntime')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hz", type=float, default=50.0)
    parser.add_argument("--ticks", type=int, default=500)
    parser.add_argument("--delay-fraction", type=float, default=0.6)
    parser.add_argument("--threshold", type=float, default=0.75)
    parser.add_argument("--noise", type=float, default=0.05, help="per-chunk offset of the simulated policy")
    parser.add_argument("--export", help="tiny export to use (default: build one in a temp dir)")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads of the tiny export")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--skip-real", action="store_true", help="simulated loop only")
    parser.add_argument("--out", default="benchmarks/results/robot_loop")
    args = parser.parse_args()

    result = {"command": "python " + shlex.join(sys.argv), "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
              "machine": machine(), "args": vars(args),
              "loadavg": [os.getloadavg()[0]], "simulated": simulated(args)}
    if not args.skip_real:
        from gr00t_trt.processing.observations import synthetic_observation
        from gr00t_trt.runtime.policy import Policy

        with tempfile.TemporaryDirectory() as tmp:
            with Policy.load(tiny_export(args, Path(tmp)), backend="ort", threads=args.threads) as policy:
                observation = synthetic_observation(policy.preprocessor.spec, EMBODIMENT, seed=0,
                                                    image_sizes=policy.manifest.image_sizes)
                result["tiny_export"] = real_loop(args, policy, observation)
                result["tiny_export_rtc"] = real_loop(args, policy, observation, rtc=True)
                result["load"] = load(args, policy, observation)
    result["loadavg"].append(os.getloadavg()[0])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out.with_suffix(".json"), result)
    write_atomic(out.with_suffix(".md"), markdown(result).encode())
    print(f"wrote {out}.json and {out}.md")


if __name__ == "__main__":
    main()
