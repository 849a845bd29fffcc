"""Build TensorRT engines from an export directory: one code path for TensorRT 10.3+ and 11.x.

Steps, each a small function: ``create_builder`` → ``network_from_onnx`` (strongly typed,
``parse_from_file`` so external weights resolve, parser errors with node and operator) →
``config_for_profile`` (workspace, optimisation level, DETAILED profiling verbosity for the audit, the
shared timing cache, one optimisation profile) → ``plan_from_network`` (``build_serialized_network``,
None checked) → audit (engine inspector) → plan + sidecar written atomically. Precision lives in the
graphs (casts, Q/DQ), never in builder flags: TensorRT 11 removed them and 10 conflicts them with strong
typing (tensorrt-notes §0.2, §1.2).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..base.errors import EngineError
from ..base.files import write_atomic
from ..contract.manifest import GraphEntry, Manifest, load_manifest
from .audit import AuditReport, audit_engine
from .cache import (
    EngineKey,
    default_engine_dir,
    engine_key,
    plan_path,
    rebuild_command,
    reuse_problem,
    write_sidecar,
)
from .device import PRECISION_MIN_SM, GpuInfo, load_cudart, load_tensorrt, probe_gpu, supports_precision
from .plan import check_plan_version
from .profiles import GraphProfile, graph_profile
from .trtexec import script_relative, timing_cache_path, trtexec_command, write_build_script

Progress = Callable[[str, str], None]


@dataclass(frozen=True)
class BuildOptions:
    out: Path | None = None  # engine folder (default: <export>/engines/sm<cc>-trt<version>)
    workspace_gb: float = 4.0
    opt_level: int = 3
    timing_cache: Path | None = None  # default: <engine folder>/timing.cache
    only: tuple[str, ...] = ()
    force: bool = False  # rebuild even when a matching plan exists
    device_id: int = 0
    adopt: bool = False  # verify and register plans built elsewhere (trtexec) instead of building


@dataclass(frozen=True)
class EngineBuild:
    graph: str
    plan: Path
    reused: bool
    seconds: float
    precisions: dict[str, int] = field(default_factory=dict)


@dataclass
class BuildReport:
    engine_dir: Path
    trt_version: str
    gpu: GpuInfo
    engines: list[EngineBuild] = field(default_factory=list)


class _CapturingLogger:
    """Mixin body of the TensorRT logger: keeps errors so a failed build can say why in one line."""

    def __init__(self, trt: Any) -> None:
        trt.ILogger.__init__(self)
        self._error_level = int(trt.ILogger.Severity.ERROR)
        self.errors: list[str] = []

    def log(self, severity: Any, msg: str) -> None:
        if int(severity) <= self._error_level:
            self.errors.append(msg)


def make_logger(trt: Any) -> Any:
    """A ``trt.ILogger`` that records error messages."""
    cls = type("CapturingLogger", (_CapturingLogger, trt.ILogger), {})
    return cls(trt)


def _last_errors(logger: Any, n: int = 2) -> str:
    errors = getattr(logger, "errors", [])
    return " | ".join(e.strip().replace("\n", " ") for e in errors[-n:]) if errors else "no error was logged"


def create_builder(trt: Any, logger: Any) -> Any:
    """``trt.Builder(logger)``, or one line when TensorRT cannot reach a GPU (pybind11 nullptr factory)."""
    try:
        return trt.Builder(logger)
    except TypeError as exc:
        raise EngineError(
            f"TensorRT {trt.__version__} could not create a Builder ({exc}) — no usable CUDA GPU or driver on "
            "this machine; build engines on the target device, or use backend='ort' here"
        ) from None


def network_from_onnx(trt: Any, builder: Any, logger: Any, onnx_path: Path, entry: GraphEntry) -> tuple[Any, Any]:
    """A strongly typed network parsed from ``onnx_path``; checks its inputs against the manifest."""
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [parser.get_error(i) for i in range(parser.num_errors)]
        if not errors:
            raise EngineError(f"TensorRT could not parse {onnx_path.name}: {_last_errors(logger)}")
        first = errors[0]
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        raise EngineError(
            f"TensorRT {trt.__version__} could not parse {onnx_path.name}: node {first.node_name()!r} "
            f"(operator {first.node_operator()}): {first.desc()}{more} — re-export at opset ≤ 21 or upgrade TensorRT"
        )
    names = [network.get_input(i).name for i in range(network.num_inputs)]
    expected = [t.name for t in entry.inputs]
    if names != expected:
        raise EngineError(f"{onnx_path.name} has inputs {names}, expected {expected} from the manifest — re-export")
    return network, parser


def config_for_profile(trt: Any, builder: Any, profile: GraphProfile, options: BuildOptions,
                       timing_cache: bytes) -> Any:
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_gb * (1 << 30)))
    config.builder_optimization_level = int(options.opt_level)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    cache = config.create_timing_cache(timing_cache)
    if not config.set_timing_cache(cache, False):
        raise EngineError("TensorRT refused the timing cache — delete it and build again")
    optimisation = builder.create_optimization_profile()
    for p in profile.inputs:
        optimisation.set_shape(p.name, p.min, p.opt, p.max)
    if config.add_optimization_profile(optimisation) < 0:
        raise EngineError(f"TensorRT refused the optimisation profile of {profile.graph}: {profile.to_dict()}")
    return config


def plan_from_network(trt: Any, builder: Any, network: Any, config: Any, logger: Any, graph: str) -> bytes:
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(
            f"TensorRT {trt.__version__} failed to build the {graph} engine: {_last_errors(logger)} — "
            "try a larger --workspace-gb or a lower --opt-level"
        )
    return bytes(serialized)


def audit_plan(trt: Any, logger: Any, plan: Any, graph: str, onnx_path: Path, profile: GraphProfile | None = None) -> AuditReport:
    """Deserialise ``plan`` (bytes or a memory map), check its profile covers ``profile``, audit it."""
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        raise EngineError(f"the {graph} plan does not deserialise on this machine: {_last_errors(logger)}")
    if profile is not None:
        check_engine_profile(engine, profile)
    report = audit_engine(trt, engine, graph, onnx_path)
    report.raise_on_failure()
    return report


def check_engine_profile(engine: Any, profile: GraphProfile) -> None:
    """Refuse a plan (built elsewhere) whose inputs or profile do not cover what the export needs."""
    names = {engine.get_tensor_name(i) for i in range(engine.num_io_tensors)}
    for p in profile.inputs:
        if p.name not in names:
            raise EngineError(f"the {profile.graph} plan has no input {p.name!r} — it was built from another graph")
        low, _opt, high = (tuple(s) for s in engine.get_tensor_profile_shape(p.name, 0))
        covered = len(low) == len(p.min) and all(
            a <= b and c >= d for a, b, c, d in zip(low, p.min, high, p.max, strict=True))
        if not covered:
            raise EngineError(f"the {profile.graph} plan's profile of {p.name!r} is {low}..{high}, the export needs "
                              f"{p.min}..{p.max} — rebuild it with the export's build.sh")


def register_plan(plan: Path, key: EngineKey, entry: GraphEntry, gpu: GpuInfo, profile: GraphProfile,
                  audit: AuditReport, build_flags: dict[str, Any], seconds: float) -> None:
    """Write the sidecar that lets the runtime load ``plan`` (architecture §3)."""
    write_sidecar(plan, key, graph=entry.name, gpu_name=gpu.name, profile=profile.to_dict(), build_flags=build_flags,
                  build_seconds=round(seconds, 3), built_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  layer_precisions=audit.summary())


def check_precisions(entries: list[GraphEntry], gpu: GpuInfo, export_dir: Path) -> None:
    """Refuse, before any build, graphs whose precision this GPU has no kernels for (fp8 needs sm ≥ 8.9)."""
    bad = [e for e in entries if not supports_precision(gpu.compute_capability, e.precision)]
    if bad:
        need = ".".join(map(str, PRECISION_MIN_SM[bad[0].precision]))
        raise EngineError(
            f"{gpu.name} (compute capability {gpu.sm}) cannot run {bad[0].precision}, which needs ≥ {need}: graph(s) "
            f"{', '.join(e.name for e in bad)} of {export_dir} — re-export them at fp16 (`gr00t-trt doctor` "
            "shows this GPU's precision plan)"
        )


def select_graphs(manifest: Manifest, only: tuple[str, ...]) -> list[GraphEntry]:
    unknown = [g for g in only if g not in manifest.graphs]
    if unknown:
        raise EngineError(f"--only {', '.join(unknown)}: no such graph — the export has: {', '.join(manifest.graphs)}")
    return [manifest.graphs[g] for g in only] if only else list(manifest.graphs.values())


def build_engines(export_dir: str | Path, options: BuildOptions = BuildOptions(),
                  progress: Progress | None = None) -> BuildReport:
    """Build (or reuse) one plan per graph of an export for this GPU and TensorRT."""
    export_dir = Path(export_dir)
    manifest = load_manifest(export_dir)
    entries = select_graphs(manifest, options.only)
    trt = load_tensorrt()
    gpu = probe_gpu(options.device_id, load_cudart())
    check_precisions(entries, gpu, export_dir)
    logger = make_logger(trt)
    engine_dir = Path(options.out) if options.out else default_engine_dir(export_dir, gpu, trt.__version__)
    if options.adopt:
        return adopt_plans(export_dir, manifest, entries, trt, gpu, logger, engine_dir, say=progress)
    builder = create_builder(trt, logger)
    engine_dir.mkdir(parents=True, exist_ok=True)
    cache_file = timing_cache_path(engine_dir, options.timing_cache)
    report = BuildReport(engine_dir, trt.__version__, gpu)
    say = progress or (lambda graph, status: None)
    for entry in entries:
        key = engine_key(manifest, entry, gpu, trt.__version__)
        plan = plan_path(engine_dir, entry.name)
        if not options.force and reuse_problem(plan, key) is None:
            report.engines.append(EngineBuild(entry.name, plan, True, 0.0))
            say(entry.name, "reused (sidecar matches)")
            continue
        say(entry.name, "building")
        start = time.perf_counter()
        onnx_path = export_dir / entry.file
        profile = graph_profile(manifest, entry)
        network, _parser = network_from_onnx(trt, builder, logger, onnx_path, entry)
        timing = cache_file.read_bytes() if cache_file.is_file() else b""
        config = config_for_profile(trt, builder, profile, options, timing)
        data = plan_from_network(trt, builder, network, config, logger, entry.name)
        audit = audit_plan(trt, logger, data, entry.name, onnx_path)
        seconds = time.perf_counter() - start
        write_atomic(plan, data)
        write_atomic(cache_file, bytes(config.get_timing_cache().serialize()))
        register_plan(plan, key, entry, gpu, profile, audit,
                      {"strongly_typed": True, "workspace_gb": options.workspace_gb, "opt_level": options.opt_level,
                       "profiling_verbosity": "DETAILED"}, seconds)
        report.engines.append(EngineBuild(entry.name, plan, False, seconds, audit.summary()))
        say(entry.name, f"done ({seconds:.1f} s, layers {audit.summary()})")
    return report


def adopt_plans(export_dir: Path, manifest: Manifest, entries: list[GraphEntry], trt: Any, gpu: GpuInfo, logger: Any,
                engine_dir: Path, say: Progress | None = None) -> BuildReport:
    """Verify plans built elsewhere (``build.sh``'s trtexec) as if we had built them, then write their
    sidecars: written by this TensorRT, loadable on this GPU, same inputs, a profile covering the export's,
    precision audit clean. Anything else is refused in one line and no sidecar is written for it."""
    import mmap

    report = BuildReport(engine_dir, trt.__version__, gpu)
    say = say or (lambda graph, status: None)
    for entry in entries:
        plan = plan_path(engine_dir, entry.name)
        start = time.perf_counter()
        if not plan.is_file():
            raise EngineError(f"--adopt: no plan {plan} — build it on this device first (the export's build.sh)")
        check_plan_version(plan, trt.__version__, f"run build.sh again, or {rebuild_command(export_dir, engine_dir)}")
        profile = graph_profile(manifest, entry)
        with open(plan, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            audit = audit_plan(trt, logger, data, entry.name, export_dir / entry.file, profile)
        seconds = time.perf_counter() - start
        register_plan(plan, engine_key(manifest, entry, gpu, trt.__version__), entry, gpu, profile, audit,
                      {"adopted": "built elsewhere (trtexec), verified by gr00t-trt build --adopt"}, seconds)
        report.engines.append(EngineBuild(entry.name, plan, True, seconds, audit.summary()))
        say(entry.name, f"adopted (layers {audit.summary()})")
    return report


def dry_run(export_dir: str | Path, options: BuildOptions = BuildOptions(), script: Path | None = None) -> tuple[Path, str]:
    """Write ``build.sh`` with the trtexec commands equivalent to :func:`build_engines`; needs no GPU."""
    export_dir = Path(export_dir)
    manifest = load_manifest(export_dir, verify_files=False)
    entries = select_graphs(manifest, options.only)
    engine_dir = Path(options.out) if options.out else export_dir / "engines" / "trtexec"
    path = Path(script) if script else export_dir / "build.sh"
    here = lambda p: script_relative(p, path)  # noqa: E731 - paths as build.sh sees them
    cache_file = here(timing_cache_path(engine_dir, options.timing_cache))
    commands = [
        trtexec_command(here(export_dir / e.file), here(plan_path(engine_dir, e.name)), graph_profile(manifest, e),
                        cache_file, workspace_gb=options.workspace_gb, opt_level=options.opt_level)
        for e in entries
    ]
    adopt = ["gr00t-trt", "build", str(here(export_dir)), "--adopt", "--out", str(here(engine_dir))]
    adopt += [f"--only={e.name}" for e in entries] if options.only else []
    return path, write_build_script(path, commands, here(engine_dir), adopt)
