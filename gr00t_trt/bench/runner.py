"""``run_benchmark``: time a loaded Policy the way a robot runs it, and say exactly what was timed.

End to end is one wall-clock measurement around ``get_action`` (preprocessing and decoding included),
never a sum of stages. Per-stage times are whatever the policy reports in ``last_timings`` after each
call — read generically, in the policy's order, so new stages (state encoder, each denoising step)
appear without changes here; on TensorRT they are device times from CUDA events. The first call after
loading is reported apart (it is what a robot sees after start-up), warm-up calls are excluded, and the
machine's other load during the run is recorded so a noisy number can be recognised. Torch-free.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..base.errors import Gr00tTrtError
from .contention import Contention
from .devices import DeviceSpec, find_device
from .machine import CpuMeter, gpu_memory_used_bytes, machine_info, peak_rss_bytes, rss_bytes
from .roofline import Roofline, StageFloor, Workload, measured_over_floor
from .stats import LatencyStats, summarize

#: progress callback: (phase "first call" | "warm-up" | "measure" | ..., calls done, calls in phase)
Progress = Callable[[str, int, int], None]
END_TO_END = "end_to_end"


@dataclass
class BenchReport:
    """Everything one ``bench`` run measured, with the header needed to reproduce it."""

    header: dict[str, Any]
    first_call_ms: float
    first_call_stages: dict[str, float]
    end_to_end: LatencyStats
    stages: dict[str, LatencyStats]  # in the policy's order
    samples: dict[str, list[float]]  # raw ms per iteration: END_TO_END and every stage
    peak_rss_bytes: int
    other_processes_cores: float | None
    roofline: Roofline | None = None
    device: DeviceSpec | None = None
    floors: dict[str, StageFloor] = field(default_factory=dict)
    reference: Any = None  # reference.ReferenceComparison, when --compare-reference ran
    #: other load and CPU GEMM rates around the timed calls; noisy → ratios marked, speed-ups withheld
    contention: Contention = field(default_factory=Contention)
    allow_noisy: bool = False  # print (marked) speed-ups of a noisy comparison anyway

    @property
    def speedups_withheld(self) -> bool:
        return self.reference is not None and self.contention.noisy and not self.allow_noisy

    @property
    def measured_over_floor(self) -> dict[str, float]:
        """measured p50 ÷ predicted floor per stage ("total" = end to end), on a known device."""
        measured = {k: s.p50 for k, s in self.stages.items() if k != "total"}
        measured["total"] = self.end_to_end.p50
        return measured_over_floor(measured, self.floors) if self.floors else {}

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "schema": "gr00t-trt-bench/1",
            "header": self.header,
            "first_call_ms": self.first_call_ms,
            "first_call_stages_ms": self.first_call_stages,
            "end_to_end_ms": self.end_to_end.to_dict(),
            "stages_ms": {k: s.to_dict() for k, s in self.stages.items()},
            "peak_rss_bytes": self.peak_rss_bytes,
            "other_processes_cores": self.other_processes_cores,
            "samples_ms": self.samples,
        }
        if self.roofline is not None:
            data["roofline"] = self.roofline.to_dict([self.device] if self.device else [])
        if self.device is not None:
            data["device"] = {"key": self.device.key, "name": self.device.name}
            data["floors_ms"] = {k: f.to_dict() for k, f in self.floors.items()}
            data["measured_over_floor"] = self.measured_over_floor
        data["contention"] = self.contention.to_dict()
        if self.reference is not None:
            data["reference"] = self.reference.to_dict()
            if self.speedups_withheld:
                for row in data["reference"]["rows_p50_ms"].values():
                    row["speedup"] = None
        return data


def backend_name(policy: Any) -> str:
    """"ort", "trt", ... of the policy's backend (its class name when it has no ``name``)."""
    backend = getattr(getattr(policy, "pipeline", None), "backend", None)
    return str(getattr(backend, "name", type(backend).__name__))


def workload_of(policy: Any, inputs: Any) -> Workload:
    """The shapes one control step of this observation really runs at (S padded as the pipeline pads)."""
    from ..runtime.buffers import padded_length

    batch, seq = inputs.input_ids.shape
    counts: dict[tuple[int, int], int] = {}
    for image in inputs.images:
        size = (int(image.shape[0]), int(image.shape[1]))
        counts[size] = counts.get(size, 0) + 1
    bucket = int(getattr(policy.pipeline, "bucket", 1))
    padded = padded_length(seq, bucket, policy.manifest.dynamic_dims.get("S"))
    # images are listed for the whole batch; the workload counts them per sample
    groups = tuple((h, w, max(n // batch, 1)) for (h, w), n in counts.items())
    return Workload(int(batch), int(seq), int(padded), groups, int(policy.manifest.steps))


def run_benchmark(policy: Any, observation: dict, *, iters: int = 50, warmup: int = 5,
                  embodiment: str | None = None, seed: int = 0, progress: Progress | None = None,
                  roofline: bool = True, device: str | DeviceSpec | None = None,
                  extra_header: dict[str, Any] | None = None) -> BenchReport:
    """Benchmark ``policy.predict(observation)``: one first call, ``warmup`` excluded calls, then
    ``iters`` measured ones, all with the same initial noise (drawn from ``seed``).

    ``device``: a roofline device (key or DeviceSpec) to compare against; default: the detected one
    when it is in the table. ``roofline=False`` skips the roofline entirely."""
    if iters < 1:
        raise Gr00tTrtError(f"iterations must be at least 1, got {iters} — pass --iters N with N ≥ 1")
    if warmup < 0:
        raise Gr00tTrtError(f"warm-up iterations must be 0 or more, got {warmup}")
    tag = policy.resolve_embodiment(embodiment)
    inputs = policy.preprocessor(observation, tag)
    workload = workload_of(policy, inputs)
    dims = policy.manifest.dims
    noise = np.random.default_rng(seed).standard_normal((workload.batch, dims["H"], dims["Da"]), dtype=np.float32)
    report_progress = progress or (lambda phase, done, total: None)

    def call() -> tuple[float, dict[str, float]]:
        start = time.perf_counter()
        policy.predict(observation, embodiment=tag, noise=noise)
        elapsed = (time.perf_counter() - start) * 1e3
        return elapsed, dict(policy.last_timings)

    machine = machine_info()
    spec = device if isinstance(device, DeviceSpec) else find_device(device or machine["device"])
    if roofline and device is not None and spec is None:
        raise Gr00tTrtError(f"unknown roofline device {device!r} — expected one of the device table's keys")
    threads = getattr(policy.pipeline.backend, "threads", None)
    on_cpu = getattr(policy.pipeline.backend, "device", None) == "cpu"
    # ONNX Runtime on the CPU: the floor is this machine's own GEMM rate and bandwidth, measured before and
    # after the timing — the better of the two is the floor, their difference a sign of other load
    limits: list[DeviceSpec] = []
    measure_floor = roofline and spec is None and backend_name(policy) == "ort" and on_cpu and bool(threads)

    def measure_limits() -> None:
        from .cpu_limits import measure_cpu_limits

        report_progress("measuring this CPU's limits", len(limits), 2)
        measured = measure_cpu_limits(threads)
        if measured is not None:
            limits.append(measured)

    report_progress("first call", 0, 1)
    first_ms, first_stages = call()
    report_progress("first call", 1, 1)
    for i in range(warmup):
        call()
        report_progress("warm-up", i + 1, warmup)
    if measure_floor:
        measure_limits()
    meter = CpuMeter().start()
    samples: dict[str, list[float]] = {END_TO_END: []}
    for i in range(iters):
        e2e, stages = call()
        samples[END_TO_END].append(e2e)
        for key, ms in stages.items():
            samples.setdefault(key, []).append(float(ms))
        report_progress("measure", i + 1, iters)
    foreign = meter.foreign_cores()
    if measure_floor:
        measure_limits()
    header = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine,
        "export": str(policy.folder),
        "backend": backend_name(policy),
        "precisions": {name: g.precision for name, g in policy.manifest.graphs.items()},
        "embodiment": tag,
        "batch": workload.batch,
        "cameras": len(inputs.images) // max(workload.batch, 1),
        "image_sizes": [[h, w] for h, w, _ in workload.images],
        "seq_len": workload.seq_len,
        "shape_bucket": workload.padded_seq_len,
        "steps": workload.steps,
        "iters": iters,
        "warmup": warmup,
        "seed": seed,
        "timing": "end to end: wall clock around get_action; stages: policy.last_timings (backend marks)",
        "rss_bytes_after": rss_bytes(),
        "gpu_memory_bytes": gpu_memory_used_bytes(),
        **(extra_header or {}),
    }
    report = BenchReport(
        header=header,
        first_call_ms=first_ms,
        first_call_stages=first_stages,
        end_to_end=summarize(samples[END_TO_END]),
        stages={k: summarize(v) for k, v in samples.items() if k != END_TO_END},
        samples=samples,
        peak_rss_bytes=peak_rss_bytes(),
        other_processes_cores=foreign,
        contention=Contention({"ours": foreign}, [1e3 * measured.tflops["fp32"] for measured in limits]),
    )
    if roofline:
        from .model_only import roofline_from_export

        report.roofline = roofline_from_export(policy.folder, workload=workload)
        if limits:
            spec = max(limits, key=lambda measured: measured.tflops["fp32"])
        if spec is not None:
            report.device, report.floors = spec, report.roofline.floors(spec)
    return report


def add_reference_contention(report: BenchReport, threads: int | None) -> None:
    """Fold the reference comparison's other load into the report's contention, and measure this CPU's
    GEMM rate once more after it when it was measured before (so the rates span every timed call)."""
    report.contention.other_cores["reference"] = getattr(report.reference, "other_cores", None)
    if report.contention.floor_gflops and threads:
        from .cpu_limits import measure_cpu_limits

        measured = measure_cpu_limits(threads)
        if measured is not None:
            report.contention.floor_gflops.append(1e3 * measured.tflops["fp32"])
