"""``gr00t-trt selftest``: the first command to run on a new device (Thor, Orin, an RTX card).

On synthetic tiny and small checkpoints it runs what the ``gpu`` tests check, at every precision the GPU
has: export, build (the precision audit fails a build whose layers fell back), TensorRT vs ONNX Runtime
(fp32), every level of ``verify`` against the PyTorch reference at architecture §7's thresholds, CUDA
graphs on = off, no allocation in steady state, plans reused on a second build, then ``bench``. A check
that fails does not stop the others: the JSON + Markdown report is the bug report, ``doctor`` included.
Without a usable GPU it stops at once with one line and writes nothing.
"""

from __future__ import annotations

import platform
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..base.errors import EngineError
from ..base.files import write_atomic, write_json

PRESETS = ("tiny", "small")
Say = Callable[[str], None]
#: steps measured by the allocation check and the bench (small: the whole run stays well under 10 min)
STEADY_STEPS = 50
BENCH_ITERS = 30
#: allocations made under these files are not counted in the heap check (empty on a GPU; the tests set
#: the stand-in's files, whose Python does what TensorRT and CUDA do natively)
HEAP_IGNORED: tuple[str, ...] = ()


@dataclass
class Check:
    preset: str
    precision: str
    name: str
    passed: bool
    detail: str
    seconds: float


@dataclass
class SelftestReport:
    started: str
    machine: dict[str, str]
    doctor: dict[str, str]
    gpu: dict[str, Any]
    precisions: list[str]
    checks: list[Check] = field(default_factory=list)
    bench: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(schema="gr00t-trt-selftest/1", passed=self.passed)
        return data

    def markdown(self) -> str:
        verdict = "PASSED" if self.passed else f"FAILED ({sum(not c.passed for c in self.checks)} checks)"
        lines = [f"# gr00t-trt selftest: {verdict}", "", f"{self.started}, {self.seconds:.0f} s, "
                 f"{self.gpu.get('name')} (sm {self.gpu.get('sm')}), precisions {', '.join(self.precisions)}", "",
                 "## Checks", "", "| preset | precision | check | result | detail | s |", "|---|---|---|---|---|---|"]
        for c in self.checks:
            detail = c.detail.replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {c.preset} | {c.precision} | {c.name} | {'pass' if c.passed else '**FAIL**'} | "
                         f"{detail} | {c.seconds:.1f} |")
        lines += ["", "## Bench (TensorRT, end to end, ms)", "", "| run | p50 | p90 | first call |", "|---|---|---|---|"]
        for run, b in self.bench.items():
            lines.append(f"| {run} | {b['p50']:.2f} | {b['p90']:.2f} | {b['first_call']:.1f} |")
        lines += ["", "## doctor", "", *(f"- {k}: {v}" for k, v in self.doctor.items()),
                  "", "## machine", "", *(f"- {k}: {v}" for k, v in self.machine.items()), ""]
        return "\n".join(lines)


def supported_precisions(compute_capability: tuple[int, int]) -> list[str]:
    """fp32 and fp16 everywhere; bf16 from sm 8.0; fp8 from sm 8.9 (tensorrt-notes §1.6)."""
    out = ["fp32", "fp16"]
    if compute_capability >= (8, 0):
        out.append("bf16")
    if compute_capability >= (8, 9):
        out.append("fp8")
    return out


def require_gpu(device_id: int = 0):
    """(GpuInfo, TensorRT version), or the one-line EngineError saying why this machine has no usable GPU."""
    from ..base.errors import Gr00tTrtError
    from ..engines.device import load_cudart, load_tensorrt, probe_gpu

    try:
        gpu = probe_gpu(device_id, load_cudart())
        trt = load_tensorrt()
    except Gr00tTrtError as exc:
        raise EngineError(f"no GPU — selftest needs an NVIDIA GPU with TensorRT and cuda-python: {exc}") from None
    return gpu, str(trt.__version__)


def device_memory_in_use() -> int:
    """Bytes of device memory in use now (cudaMemGetInfo: total - free)."""
    from ..runtime.cuda_python import ask, load_cudart

    cudart = load_cudart()
    err, free, total = ask(cudart.cudaMemGetInfo)
    if int(err) != 0:
        raise EngineError(f"cudaMemGetInfo failed with {int(err)}")
    return int(total) - int(free)


class _Run:
    """One selftest: the report, the progress printer, and ``check`` which times and records one check."""

    def __init__(self, report: SelftestReport, say: Say) -> None:
        self.report, self.say, self.start = report, say, time.perf_counter()

    def check(self, preset: str, precision: str, name: str, fn: Callable[..., str], *args: Any) -> bool:
        self.say(f"[{time.perf_counter() - self.start:6.1f} s] {preset} {precision}: {name} ...")
        t0 = time.perf_counter()
        try:
            detail, passed = fn(*args), True
        except Exception as exc:  # noqa: BLE001 - every failure is reported, the other checks still run
            last = traceback.extract_tb(exc.__traceback__)[-1:]
            where = f" (at {Path(last[0].filename).name}:{last[0].lineno})" if last else ""
            detail, passed = f"{type(exc).__name__}: {exc}{where}", False
        self.report.checks.append(Check(preset, precision, name, passed, detail, round(time.perf_counter() - t0, 2)))
        self.say(f"{'':11}{'ok' if passed else 'FAILED'}: {detail}")
        return passed


def _observation(policy, batch: int = 1, seed: int = 0):
    from ..processing.observations import synthetic_observation

    tag = sorted(policy.manifest.embodiments)[0]
    return tag, synthetic_observation(policy.preprocessor, tag, seed=seed, batch=batch,
                                      image_sizes=policy.manifest.image_sizes)


def _export(checkpoint: Path, folder: Path, precision: str) -> str:
    from ..export.driver import ExportOptions, export_checkpoint

    if folder.exists():
        shutil.rmtree(folder)
    manifest = export_checkpoint(checkpoint, folder, ExportOptions(precision=precision, max_batch=2, calib_count=2))
    return f"{len(manifest.graphs)} graphs"


def _build(folder: Path, timing_cache: Path) -> str:
    """Build (audited: a layer that fell back from the precision the graph asks for fails the build); one
    timing cache for every export of the run, so layers timed once are not timed again."""
    from ..engines.build import BuildOptions, build_engines

    report = build_engines(folder, BuildOptions(workspace_gb=2, force=True, timing_cache=timing_cache))
    layers: dict[str, int] = {}
    for e in report.engines:
        for precision, n in e.precisions.items():
            layers[precision] = layers.get(precision, 0) + n
    return f"{len(report.engines)} engines in {sum(e.seconds for e in report.engines):.1f} s, layers {layers}"


def _reuse(folder: Path) -> str:
    from ..engines.build import BuildOptions, build_engines

    engines = build_engines(folder, BuildOptions(workspace_gb=2)).engines
    rebuilt = [e.graph for e in engines if not e.reused]
    if rebuilt:
        raise EngineError(f"a second build rebuilt {', '.join(rebuilt)} instead of reusing the plans")
    return f"all {len(engines)} plans reused"


def _trt_vs_ort(folder: Path) -> str:
    """fp32 engines against ONNX Runtime on the same inputs, batch 1 and 2, three calls each."""
    from ..runtime.policy import Policy

    worst = 0.0
    with Policy.load(folder, backend="ort") as ref, Policy.load(folder, backend="trt") as policy:
        for batch in (1, 2):
            tag, obs = _observation(policy, batch, seed=batch)
            expected = ref.predict(obs, embodiment=tag, seed=0)
            for _ in range(3):
                got = policy.predict(obs, embodiment=tag, seed=0)
                for key in expected:  # fp32 engines: TF32 off, so the gpu tests' bound holds
                    np.testing.assert_allclose(got[key], expected[key], rtol=1e-3, atol=1e-3, err_msg=key)
                    worst = max(worst, float(np.max(np.abs(got[key] - expected[key]))))
    return f"max |TensorRT - ONNX Runtime| = {worst:.2e} (bound 1e-3 + 1e-3·|x|)"


def _verify(folder: Path, checkpoint: Path) -> str:
    from ..verification.verify import verify_export

    report = verify_export(folder, checkpoint, backend="trt", seeds=1)
    if not report.passed:
        worst = "; ".join(f"{c.stage}: cosine {c.cosine:.5f}, mean abs {c.mean_abs:.3g} ({c.threshold.describe()})"
                          for c in report.failures[:3])
        raise AssertionError(f"{len(report.failures)} of {len(report.comparisons)} comparisons fail the verify thresholds: {worst}")
    return f"{len(report.comparisons)} comparisons within the verify thresholds"


def _graphs_on_off(folder: Path) -> str:
    from ..runtime.policy import Policy

    with Policy.load(folder, backend="trt", cuda_graphs=True) as on, \
            Policy.load(folder, backend="trt", cuda_graphs=False) as off:
        for batch in (1, 2):
            tag, obs = _observation(on, batch, seed=10 + batch)
            for _ in range(2):  # the second call replays the captured graph
                a, b = on.predict(obs, embodiment=tag, seed=1), off.predict(obs, embodiment=tag, seed=1)
                for key in a:
                    np.testing.assert_array_equal(a[key], b[key], err_msg=f"{key}, batch {batch}")
    return "bitwise equal, batch 1 and 2, capture and replay"


def _steady_state(folder: Path) -> str:
    import tracemalloc

    from ..runtime.policy import Policy

    with Policy.load(folder, backend="trt") as policy:
        tag, obs = _observation(policy)
        for _ in range(5):
            policy.predict(obs, embodiment=tag, seed=0)
        before = device_memory_in_use()
        tracemalloc.start(32)
        ignore = [tracemalloc.Filter(False, pattern, all_frames=True) for pattern in HEAP_IGNORED]
        snapshot = tracemalloc.take_snapshot().filter_traces(ignore)
        for _ in range(STEADY_STEPS):
            policy.predict(obs, embodiment=tag, seed=0)
        after_steps = tracemalloc.take_snapshot().filter_traces(ignore)
        grown = sum(s.size_diff for s in after_steps.compare_to(snapshot, "filename"))
        tracemalloc.stop()
        after = device_memory_in_use()
    if after != before:
        raise AssertionError(f"device memory in use grew by {after - before} bytes over {STEADY_STEPS} steps")
    if grown >= 64 << 10:
        raise AssertionError(f"the Python heap grew {grown} bytes over {STEADY_STEPS} steps")
    return f"device memory flat, Python heap +{grown} B over {STEADY_STEPS} steps"


def _bench(folder: Path, results: dict[str, dict[str, Any]], key: str) -> str:
    from ..bench.runner import run_benchmark
    from ..runtime.policy import Policy

    with Policy.load(folder, backend="trt") as policy:
        tag, obs = _observation(policy)
        result = run_benchmark(policy, obs, iters=BENCH_ITERS, warmup=5, embodiment=tag, roofline=False)
    results[key] = {"p50": result.end_to_end.p50, "p90": result.end_to_end.p90, "first_call": result.first_call_ms,
                    "stages_p50": {k: s.p50 for k, s in result.stages.items()}}
    return f"p50 {result.end_to_end.p50:.2f} ms, p90 {result.end_to_end.p90:.2f} ms over {BENCH_ITERS} calls"


def _one_export(run: _Run, preset: str, precision: str, checkpoint: Path, folder: Path) -> None:
    """Every check on one export; a failed export or build skips the checks that need its engines."""
    if not run.check(preset, precision, "export", _export, checkpoint, folder, precision):
        return
    if not run.check(preset, precision, "build + precision audit", _build, folder, folder.parent / "timing.cache"):
        return
    run.check(preset, precision, "plans reused from cache", _reuse, folder)
    if precision == "fp32":
        run.check(preset, precision, "TensorRT = ONNX Runtime", _trt_vs_ort, folder)
    run.check(preset, precision, "verify vs PyTorch", _verify, folder, checkpoint)
    run.check(preset, precision, "CUDA graphs on = off", _graphs_on_off, folder)
    run.check(preset, precision, "no allocation per step", _steady_state, folder)
    run.check(preset, precision, "bench", _bench, folder, run.report.bench, f"{preset}-{precision}")


def run_selftest(out_dir: str | Path, *, presets: tuple[str, ...] = PRESETS, precisions: tuple[str, ...] = (),
                 device_id: int = 0, say: Say = print) -> SelftestReport:
    """Run every check on this GPU, write ``selftest.json`` and ``selftest.md`` in ``out_dir``."""
    from ..families.registry import DEFAULT_FAMILY
    from .doctor import run_doctor

    gpu, trt_version = require_gpu(device_id)  # before anything is written
    out = Path(out_dir)
    chosen = list(precisions) or supported_precisions(gpu.compute_capability)
    unsupported = [p for p in chosen if p not in supported_precisions(gpu.compute_capability)]
    if unsupported:
        raise EngineError(f"--precision {', '.join(unsupported)}: not supported by {gpu.name} (sm {gpu.sm}) — "
                          f"expected one of: {', '.join(supported_precisions(gpu.compute_capability))}")
    report = SelftestReport(
        started=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        machine={"platform": platform.platform(), "python": platform.python_version(), "tensorrt": trt_version},
        doctor=run_doctor(device_id=device_id).to_dict(),
        gpu={"name": gpu.name, "sm": gpu.sm, "memory_gib": round(gpu.total_memory / 2**30, 1),
             "integrated": gpu.integrated},
        precisions=chosen)
    run = _Run(report, say)
    say(f"selftest on {gpu.name} (sm {gpu.sm}), TensorRT {trt_version}: presets {', '.join(presets)}, "
        f"precisions {', '.join(chosen)} → {out}")
    for preset in presets:
        checkpoint = DEFAULT_FAMILY.export().make_checkpoint(out / "checkpoints" / preset, preset, seed=0, overwrite=True)
        for precision in chosen:
            _one_export(run, preset, precision, checkpoint, out / "exports" / f"{preset}-{precision}")
    report.seconds = round(time.perf_counter() - run.start, 1)
    write_json(out / "selftest.json", report.to_dict())
    write_atomic(out / "selftest.md", report.markdown())
    say(f"{'PASSED' if report.passed else 'FAILED'}: {sum(c.passed for c in report.checks)}/{len(report.checks)} "
        f"checks in {report.seconds:.0f} s — report: {out / 'selftest.json'}, {out / 'selftest.md'}")
    return report
