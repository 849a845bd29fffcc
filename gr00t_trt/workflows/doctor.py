"""``gr00t-trt doctor``: what this machine can run, probed once, each answer one line.

Python, torch, onnx, ONNX Runtime (version, providers), TensorRT (version or why unusable), cuda-python
(version, import layout) and the CUDA driver (or which cuda-python line it needs),
the GPU (name, compute capability, memory, integrated or discrete), the Jetson L4T release, fp8/fp4
support, whether an export's engines match this machine, and the precision plan we recommend.
"""

from __future__ import annotations

import importlib.metadata
import platform
from dataclasses import dataclass, field
from pathlib import Path

from ..base.errors import Gr00tTrtError
from ..runtime.cuda_python import INSTALL, describe, driver_line, version_text


@dataclass(frozen=True)
class DoctorRow:
    name: str
    value: str
    ok: bool = True


@dataclass
class DoctorReport:
    rows: list[DoctorRow] = field(default_factory=list)

    def add(self, name: str, value: str, ok: bool = True) -> None:
        self.rows.append(DoctorRow(name, value, ok))

    def value(self, name: str) -> str:
        return next(r.value for r in self.rows if r.name == name)

    def to_dict(self) -> dict[str, str]:
        return {r.name: r.value for r in self.rows}


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def jetson_release(path: Path = Path("/etc/nv_tegra_release")) -> str | None:
    """``R36 (release), REVISION: 4.3`` → ``L4T R36.4.3``; None off Jetson."""
    try:
        head = path.read_text().split(",")
    except OSError:
        return None
    major = head[0].replace("#", "").split()[0] if head else "?"
    revision = next((p.split(":")[1].strip() for p in head if "REVISION" in p), "?")
    return f"L4T {major}.{revision}"


def precision_plan(compute_capability: tuple[int, int] | None) -> str:
    """Architecture §5 defaults, narrowed to what the GPU has."""
    if compute_capability is None:
        return "fp32 graphs on ONNX Runtime CPU (no GPU)"
    if compute_capability >= (8, 9):
        return "vision fp16, backbone fp8, dit_context fp8, dit fp8, small graphs fp16"
    if compute_capability >= (8, 0):
        return "backbone, dit_context and dit int8, the rest fp16 (--device orin) — this GPU has no fp8"
    return "fp16 everywhere — this GPU has no fp8 or bf16"


def _tensorrt_row(report: DoctorReport, gpu_problem: str | None):
    from ..engines.device import load_tensorrt

    try:
        trt = load_tensorrt()
    except Gr00tTrtError:
        report.add("tensorrt", "not installed — on x86: pip install tensorrt from NVIDIA's package index (README); "
                   "on Jetson it comes with JetPack", ok=False)
        return None
    version = getattr(trt, "__version__", "?")
    if gpu_problem:  # never create a Builder without a device: some releases abort the process
        report.add("tensorrt", f"{version} installed but unusable: no GPU ({gpu_problem})", ok=False)
        return None
    from ..engines.build import create_builder, make_logger

    try:
        create_builder(trt, make_logger(trt))
    except Gr00tTrtError as exc:
        report.add("tensorrt", f"{version} installed but unusable: {exc}", ok=False)
        return None
    report.add("tensorrt", f"{version} (Builder created)")
    return version


def _cuda_python_rows(report: DoctorReport, cudart) -> None:
    """"cuda-python" (version, import layout, the CUDA it was made for) and "cuda driver" (or the mismatch)."""
    info = describe(cudart)
    report.add("cuda-python", f"{info.version} ({info.layout}, CUDA {version_text(info.runtime)})")
    text, ok = driver_line(info)
    report.add("cuda driver", text, ok=ok)


def run_doctor(export_dir: str | Path | None = None, device_id: int = 0) -> DoctorReport:
    report = DoctorReport()
    report.add("python", f"{platform.python_version()} ({platform.machine()})")
    for dist in ("torch", "onnx"):
        report.add(dist, _version(dist) or "not installed", ok=_version(dist) is not None)
    try:
        import onnxruntime as ort

        report.add("onnxruntime", f"{ort.__version__} — providers: {', '.join(ort.get_available_providers())}")
    except ImportError:
        report.add("onnxruntime", "not installed", ok=False)
    gpu, gpu_problem = None, None
    from ..engines.device import load_cudart, probe_gpu

    try:
        cudart = load_cudart()
    except Gr00tTrtError:
        cudart = None
        report.add("cuda-python", f"not installed — {INSTALL[12]}; Jetson Thor or driver r580+: {INSTALL[13]}", ok=False)
    if cudart is not None:
        _cuda_python_rows(report, cudart)
        try:
            gpu = probe_gpu(device_id, cudart)
        except Gr00tTrtError as exc:  # "no usable CUDA GPU — <what cudart said> — <hint>"
            parts = str(exc).split(" — ")
            gpu_problem = parts[1] if len(parts) > 1 else parts[0]
    if gpu is None:
        report.add("gpu", f"no GPU — {gpu_problem or 'cuda-python is not installed, the GPU cannot be probed'}", ok=False)
    else:
        report.add("gpu", f"{gpu.name}, compute capability {gpu.sm}, {gpu.total_memory / 2**30:.1f} GiB, "
                   f"{'integrated (shared DRAM)' if gpu.integrated else 'discrete'}")
    jetson = jetson_release()
    report.add("jetson", jetson or "not a Jetson")
    cc = gpu.compute_capability if gpu else None
    from ..engines.device import supports_precision

    report.add("fp8", "yes" if supports_precision(cc, "fp8") else "no", ok=True)
    report.add("fp4", "yes" if supports_precision(cc, "fp4") else "no", ok=True)
    trt_version = _tensorrt_row(report, gpu_problem)
    if export_dir is not None:
        _precision_row(report, Path(export_dir), gpu)
        report.add("engines", _engines_status(Path(export_dir), gpu, trt_version))
    report.add("precision plan", precision_plan(cc))
    return report


def _precision_row(report: DoctorReport, export_dir: Path, gpu) -> None:
    """Whether this GPU runs every graph's precision — the same one-line refusal ``build`` gives (fp8 below
    sm 8.9), up front, before anyone waits for a build."""
    from ..contract.manifest import load_manifest
    from ..engines.build import check_precisions

    if gpu is None:
        return
    try:
        check_precisions(list(load_manifest(export_dir, verify_files=False).graphs.values()), gpu, export_dir)
    except Gr00tTrtError as exc:
        report.add("export precisions", str(exc), ok=False)
        return
    report.add("export precisions", "this GPU runs every graph's precision")


def _engines_status(export_dir: Path, gpu, trt_version: str | None) -> str:
    from ..contract.manifest import load_manifest
    from ..engines.cache import default_engine_dir, engine_key, plan_path, rebuild_command, reuse_problem

    if gpu is None or trt_version is None:
        return "cannot match engines without a usable GPU and TensorRT"
    manifest = load_manifest(export_dir, verify_files=False)
    engine_dir = default_engine_dir(export_dir, gpu, trt_version)
    problems = [p for e in manifest.graphs.values()
                if (p := reuse_problem(plan_path(engine_dir, e.name), engine_key(manifest, e, gpu, trt_version)))]
    if not problems:
        return f"all {len(manifest.graphs)} engines in {engine_dir} match this machine"
    return f"{len(problems)} of {len(manifest.graphs)} engines missing or stale ({problems[0]}) — run: " + rebuild_command(export_dir, engine_dir)
