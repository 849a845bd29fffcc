"""`gr00t-trt build` (dry run golden, through the stand-in, no GPU) and `gr00t-trt doctor`."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from gr00t_trt.cli import app

GOLDEN = """#!/usr/bin/env bash
# TensorRT engines with trtexec, equivalent to `gr00t-trt build` (written by `gr00t-trt build --dry-run`).
# Run on the target device: plans are tied to its GPU and TensorRT version.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p ../eng
trtexec --onnx=state_encoder.onnx --stronglyTyped --minShapes=state:1x1x16,embodiment_id:1 --optShapes=state:1x1x16,embodiment_id:1 --maxShapes=state:4x1x16,embodiment_id:4 --saveEngine=../eng/state_encoder.plan --timingCacheFile=../eng/timing.cache --memPoolSize=workspace:2048M --builderOptimizationLevel=4 --profilingVerbosity=detailed --skipInference
trtexec --onnx=dit.onnx --stronglyTyped --minShapes=state_features:1x1x32,action_features:1x16x32,cross_k:2x1x4x1x8,cross_v:2x1x4x1x8,text_bias:1x1x1x1,image_bias:1x1x1x1,step:1 --optShapes=state_features:1x1x32,action_features:1x16x32,cross_k:2x1x4x256x8,cross_v:2x1x4x256x8,text_bias:1x1x1x256,image_bias:1x1x1x256,step:1 --maxShapes=state_features:4x1x32,action_features:4x16x32,cross_k:2x4x4x512x8,cross_v:2x4x4x512x8,text_bias:4x1x1x512,image_bias:4x1x1x512,step:4 --saveEngine=../eng/dit.plan --timingCacheFile=../eng/timing.cache --memPoolSize=workspace:2048M --builderOptimizationLevel=4 --profilingVerbosity=detailed --skipInference
# verify the plans (TensorRT, GPU, I/O, profile, precision audit) and write their sidecars
gr00t-trt build . --adopt --out ../eng --only=state_encoder --only=dit
"""


def test_build_dry_run_golden(tiny_export, tmp_path):
    tiny_export = shutil.copytree(tiny_export, tmp_path / "export")
    out = tmp_path / "eng"
    result = CliRunner().invoke(app, ["build", str(tiny_export), "--dry-run", "--out", str(out), "--only", "state_encoder",
                                      "--only", "dit", "--workspace-gb", "2", "--opt-level", "4"])
    assert result.exit_code == 0, result.output
    script = Path(tiny_export) / "build.sh"
    assert script.read_text() == GOLDEN  # script-relative paths: the export can be copied to the device
    assert result.output.strip() == f"wrote {script} — run it on the target device: bash {script}"  # nothing to wrap
    assert script.stat().st_mode & 0o111


def test_plans_built_by_build_sh_are_adopted_after_verification(standin_trt, tiny_export, tmp_path):
    """Defect 9: trtexec-built plans (no sidecar) become loadable through `build --adopt`, which checks them."""
    import tensorrt as trt
    from cuda.bindings import runtime as cudart

    from gr00t_trt.contract.manifest import load_manifest
    from gr00t_trt.engines.build import BuildOptions, build_engines
    from gr00t_trt.engines.cache import engine_key, require_loadable, sidecar_path
    from gr00t_trt.engines.device import probe_gpu

    tiny_export = shutil.copytree(tiny_export, tmp_path / "export")
    out = tmp_path / "eng"
    build_engines(tiny_export, BuildOptions(out=out, only=("state_encoder",)))  # stands in for trtexec
    plan = out / "state_encoder.plan"
    sidecar_path(plan).unlink()
    manifest = load_manifest(tiny_export)
    args = ["build", str(tiny_export), "--adopt", "--out", str(out), "--only", "state_encoder"]
    standin_trt.compute_capability = (9, 0)  # a plan built on another GPU does not deserialise here
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and "does not deserialise on this machine: IRuntime::deserializeCudaEngine" in result.output
    assert not sidecar_path(plan).exists()
    standin_trt.compute_capability = (8, 9)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "1 adopted — TensorRT 10.13.0.35 on Stand-in GPU" in result.output
    sidecar = sidecar_path(plan).read_text()
    assert '"adopted"' in sidecar and '"layer_precisions"' in sidecar
    key = engine_key(manifest, manifest.graph("state_encoder"), probe_gpu(0, cudart), trt.__version__)
    assert require_loadable(tiny_export, out, "state_encoder", key) == plan  # the runtime now loads it


def test_build_through_the_standin_prints_progress(standin_trt, tiny_export, tmp_path):
    result = CliRunner().invoke(app, ["build", str(tiny_export), "--out", str(tmp_path), "--only", "state_encoder"])
    assert result.exit_code == 0, result.output
    assert "state_encoder: building" in result.output and "1 built, 0 reused — TensorRT 10.13.0.35 on Stand-in GPU" in result.output


def test_build_without_gpu_is_one_line(standin_trt, tiny_export, tmp_path):
    standin_trt.device_count = 0
    result = CliRunner().invoke(app, ["build", str(tiny_export), "--out", str(tmp_path)])
    assert result.exit_code == 1
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: no usable CUDA GPU — cudaGetDeviceCount returned cudaErrorNoDevice (100)")


def test_doctor_reports_no_gpu_cleanly():
    from gr00t_trt.workflows.doctor import run_doctor

    report = run_doctor()
    assert report.value("gpu").startswith("no GPU — ")
    assert report.value("precision plan") == "fp32 graphs on ONNX Runtime CPU (no GPU)"
    assert "CPUExecutionProvider" in report.value("onnxruntime")
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 0 and "no GPU" in result.output


def test_doctor_with_a_gpu_and_matching_engines(standin_trt, tiny_export, tmp_path):
    tiny_export = shutil.copytree(tiny_export, tmp_path / "export")
    from gr00t_trt.engines.build import BuildOptions, build_engines
    from gr00t_trt.workflows.doctor import run_doctor

    before = run_doctor(tiny_export)
    assert before.value("gpu") == "Stand-in GPU, compute capability 8.9, 16.0 GiB, discrete"
    assert before.value("tensorrt") == "10.13.0.35 (Builder created)" and before.value("fp8") == "yes"
    assert before.value("engines").startswith("7 of 7 engines missing or stale") and "gr00t-trt build" in before.value("engines")
    build_engines(tiny_export, BuildOptions())
    assert run_doctor(tiny_export).value("engines").startswith("all 7 engines in")
