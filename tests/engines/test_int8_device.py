"""int8 for GPUs without fp8 (issue 20): ``--device orin`` plans int8 for the GEMM-heavy graphs and fp16
elsewhere, never fp8; ``doctor`` and ``build`` refuse fp8 graphs below sm 8.9 in one line (stand-in GPU)."""

from __future__ import annotations

import json
import shutil

import pytest

from gr00t_trt.base.errors import ExportError
from gr00t_trt.bench.devices import DEVICES
from gr00t_trt.export.precision import plan_precision


def test_orin_plans_int8_gemm_graphs_fp16_elsewhere_and_never_fp8():
    plan = plan_precision(device="orin")
    assert plan.graphs == {"vision": "fp16", "backbone": "int8", "dit_context": "int8", "state_encoder": "fp16",
                           "action_encoder": "fp16", "dit": "int8", "action_decoder": "fp16"}
    assert plan.remainder("int8") == "fp16"  # TensorRT on the GPU: norms, softmax, attention in fp16
    assert plan_precision("int8").remainder("int8") == "fp32"  # no device: ONNX Runtime CPU's int8 kernels
    for key, spec in DEVICES.items():  # no device without fp8 tensor cores is ever given an fp8 graph
        if "fp8" not in spec.tflops:
            assert "fp8" not in plan_precision(device=key).graphs.values(), key
    with pytest.raises(ExportError, match=r"^dit at fp8 for --device orin — Jetson AGX Orin 64 GB has no fp8 tensor cores"):
        plan_precision(overrides="dit=fp8", device="orin")
    with pytest.raises(ExportError, match=r"^state_encoder at int8 — expected fp32, fp16 or bf16: only vision, backbone"):
        plan_precision(overrides="state_encoder=int8")


def _with_fp8_dit(tiny_export, tmp_path):
    """A copy of the tiny export whose manifest says its dit is fp8 (what the GPU check reads)."""
    export = shutil.copytree(tiny_export, tmp_path / "export")
    manifest = json.loads((export / "manifest.json").read_text())
    manifest["graphs"]["dit"]["precision"] = "fp8"
    (export / "manifest.json").write_text(json.dumps(manifest))
    return export


def test_doctor_and_build_refuse_fp8_below_sm89_in_one_line(standin_trt, tiny_export, tmp_path):
    from gr00t_trt.base.errors import EngineError
    from gr00t_trt.engines.build import BuildOptions, build_engines
    from gr00t_trt.workflows.doctor import run_doctor

    export = _with_fp8_dit(tiny_export, tmp_path)
    standin_trt.compute_capability = (8, 7)  # Jetson Orin
    report = run_doctor(export)
    row = next(r for r in report.rows if r.name == "export precisions")
    assert not row.ok and "\n" not in row.value
    assert row.value.startswith("Stand-in GPU (compute capability 8.7) cannot run fp8, which needs ≥ 8.9: graph(s) dit")
    assert report.value("precision plan").startswith("backbone, dit_context and dit int8")
    with pytest.raises(EngineError, match=r"cannot run fp8, which needs ≥ 8.9: graph\(s\) dit of"):
        build_engines(export, BuildOptions(out=tmp_path / "eng", only=("dit",)))
    standin_trt.compute_capability = (8, 9)
    assert run_doctor(export).value("export precisions") == "this GPU runs every graph's precision"


def test_the_int8_plan_is_the_n16_familys_data():
    from gr00t_trt.export.quantize import default_plans
    from gr00t_trt.families.family import FamilyExport, required_names
    from gr00t_trt.families.registry import N16

    assert "INT8_PLAN" in required_names(FamilyExport)  # every family declares one
    assert N16.export().INT8_PLAN is default_plans("int8")[0]  # and the quantiser reads that very plan
    assert set(N16.export().INT8_PLAN) == {"vision", "backbone", "dit_context", "dit"}
