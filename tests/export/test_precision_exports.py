"""Exports at fp16, bf16 and fp8 (mixed per graph), checked on the CPU against the fp32 graph modules.

Fast tests share one tiny mixed export (vision fp8, backbone bf16, dit_context fp8, dit fp8, small graphs
fp16: every precision and both kinds of fp8 graph), one embodiment, synthetic calibration. The ``slow``
tests export the ``small`` preset at each precision and hold it to the thresholds of architecture §7.
"""

from __future__ import annotations

import json
import os
import re

import onnx
import pytest

from gr00t_trt.contract.manifest import load_manifest
from gr00t_trt.export.driver import ExportOptions, export_checkpoint
from gr00t_trt.verification.preflight import preflight_export

EMBODIMENT = "libero_panda"


@pytest.fixture(scope="module")
def mixed_preflight(mixed_export, tiny_checkpoint):
    return preflight_export(mixed_export, tiny_checkpoint)


def test_manifest_records_plan_activation_dtype_and_calibration(mixed_export):
    manifest = load_manifest(mixed_export)
    assert {g.kind: g.precision for g in manifest.graphs.values()} == {
        "vision": "fp8", "backbone": "bf16", "dit_context": "fp8", "dit": "fp8",
        "state_encoder": "fp16", "action_encoder": "fp16", "action_decoder": "fp16",
    }
    section = manifest.precision
    assert section["activation_dtype"] == "float32"
    # one dtype per float tensor for the whole export: producers and consumers agree by construction
    floats = {t.dtype for g in manifest.graphs.values() for t in (*g.inputs, *g.outputs) if t.dtype.startswith("float")}
    assert floats == {"float32"}
    calibration = section["calibration"]
    assert calibration["source"] == "synthetic" and calibration["observations"] == 1
    assert len(calibration["fingerprint"]) == 64
    # one observation whose two cameras differ in size (the named sizes rotate): one vision call per size
    assert calibration["samples"] == {"vision": 2, "dit_context": 1, "dit": manifest.steps}
    assert json.loads((mixed_export / "manifest.json").read_text())["precision"] == section


def test_half_graphs_hold_half_weights_and_fp8_graphs_fp8_zero_points(mixed_export):
    def initializer_types(name: str) -> set[str]:
        model = onnx.load(str(mixed_export / f"{name}.onnx"), load_external_data=False)
        return {onnx.TensorProto.DataType.Name(i.data_type) for i in model.graph.initializer}

    assert "BFLOAT16" in initializer_types("backbone")
    assert "FLOAT16" in initializer_types("state_encoder")
    assert {"FLOAT8E4M3FN", "FLOAT16"} <= initializer_types("dit")  # zero points; the rest fp16 (ModelOpt)
    assert "FLOAT" not in initializer_types("action_encoder")  # weights and step tables are half


def test_mixed_export_graphs_pass_their_thresholds_on_the_cpu(mixed_preflight):
    per_graph = [c for c in mixed_preflight.comparisons if "end-to-end" not in c.stage]
    assert {c.stage.split(" [")[0].split("graph ")[1] for c in per_graph} == {
        "vision", "backbone", "dit_context", "state_encoder", "action_encoder", "dit", "action_decoder"}
    failures = [c.stage for c in per_graph if not c.passed]
    assert not failures
    assert any("[bf16]" in c.stage for c in per_graph) and any("[fp8]" in c.stage for c in per_graph)


def test_mixed_export_actions_pass_fp8_thresholds_end_to_end(mixed_preflight):
    actions = [c for c in mixed_preflight.comparisons if "end-to-end" in c.stage and "features" not in c.stage]
    assert len(actions) >= 2
    for check in actions:
        assert check.passed, check
        assert check.threshold.min_cosine == pytest.approx(0.98)  # judged at fp8, the least precise head graph
    # fp8 is really less exact than fp32: the preflight measures an error, not a copy
    assert all(c.max_abs > 0 for c in actions)


def test_ort_runtime_refuses_bf16_graphs_by_name(mixed_export):
    """bf16 graphs are for TensorRT; ONNX Runtime CPU lacks bf16 kernels, so the preflight checks them in
    PyTorch — and the ORT backend must refuse them plainly rather than run something else."""
    from gr00t_trt.base.errors import BackendError
    from gr00t_trt.runtime.policy import Policy

    with pytest.raises(BackendError, match=r"its bf16 graphs \(backbone\) cannot run on ONNX Runtime CPU — build "
                                           r"TensorRT engines .*PyTorch bf16 preflight"):
        Policy.load(mixed_export, backend="ort")


def test_verify_checks_bf16_exports_through_the_cpu_preflight(mixed_export, tiny_checkpoint):
    from gr00t_trt.verification.verify import verify_export

    report = verify_export(mixed_export, tiny_checkpoint, backend="ort")
    assert report.context["backend"] is None and "CPU preflight" in report.context["note"]
    assert report.context["calibration"]["source"] == "synthetic"  # said plainly, and rendered in yellow
    graphs = {c.stage.split(" graph ")[1].split(" [")[0] for c in report.comparisons if " graph " in c.stage}
    assert graphs == {"vision", "backbone", "dit_context", "state_encoder", "action_encoder", "dit",
                      "action_decoder"}
    assert any("end-to-end" in c.stage for c in report.comparisons)


# ------------------------------------------------------------------------------------------ slow: small
#: small-preset exports take minutes each on 2 cores: run them with GR00T_TRT_SMALL_PRECISION=1
small_only = pytest.mark.skipif(
    not os.environ.get("GR00T_TRT_SMALL_PRECISION"),
    reason="small-preset precision exports take minutes each — set GR00T_TRT_SMALL_PRECISION=1 to run them",
)


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    from gr00t_trt.families.n16.synthetic import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "small", "small", seed=0)


def _recorded(folder, checkpoint):
    from gr00t_trt.families.n16.processing.modality import load_processor_spec
    from gr00t_trt.processing.observations import record_observation, synthetic_observation

    spec = load_processor_spec(checkpoint)
    for seed in range(4):
        obs = synthetic_observation(spec, EMBODIMENT, seed=500 + seed, image_sizes=((252, 336),))
        record_observation(folder, obs, EMBODIMENT)
    return str(folder)


@pytest.mark.slow
@small_only
@pytest.mark.parametrize(
    ("precision", "overrides", "recorded"),
    [("fp16", "", False), ("bf16", "", False), ("fp8", "", False), ("fp8", "", True),
     ("fp16", "vision=fp16,backbone=bf16,dit=fp8", False), ("int8", "", True)],
    ids=["fp16", "bf16", "fp8-synthetic", "fp8-recorded", "mixed", "int8-recorded"],
)
def test_small_preset_against_architecture_thresholds(small_checkpoint, tmp_path, precision, overrides, recorded):
    out = tmp_path / "export"
    calib = _recorded(tmp_path / "recorded", small_checkpoint) if recorded else None
    manifest = export_checkpoint(small_checkpoint, out, ExportOptions(
        precision=precision, graph_precision=overrides, calib=calib, embodiments=(EMBODIMENT,),
        image_sizes=((252, 336),)))
    if calib:
        assert manifest.precision["calibration"]["source"] == "recorded"
    report = preflight_export(out, small_checkpoint, seed=7)  # other observations than the calibration's
    failures = [f"{c.stage}: cos {c.cosine:.5f} mean {c.mean_abs:.4f}" for c in report.failures]
    assert report.passed, failures


def test_sizes_count_fp8_weights_at_one_byte(mixed_export, tiny_export):
    from gr00t_trt.contract.export_sizes import graph_sizes

    mixed = {s.name: s for s in graph_sizes(mixed_export, load_manifest(mixed_export))}
    fp32 = {s.name: s for s in graph_sizes(tiny_export, load_manifest(tiny_export))}
    assert mixed["dit"].precision == "fp8" and fp32["dit"].precision == "fp32"
    assert all(s.on_disk > 0 and s.engine_weights > 0 for s in mixed.values())
    # fp8 GEMM weights (1 byte) + fp16 rest vs fp32: well under half
    assert mixed["dit"].engine_weights < 0.4 * fp32["dit"].engine_weights
    # bf16 backbone: half the fp32 bytes (integer buffers aside)
    assert 0.45 < mixed["backbone"].engine_weights / fp32["backbone"].engine_weights < 0.55


def test_export_command_refuses_bad_precision_plans_in_one_line(tiny_checkpoint, tmp_path):
    from typer.testing import CliRunner

    from gr00t_trt.cli import app

    cases = [
        (["--graph-precision", "dit=fp4"], "--graph-precision dit 'fp4' — expected one of: fp32, fp16, bf16, fp8"),
        (["--device", "orin", "--graph-precision", "dit=fp8"], "dit at fp8 for --device orin"),
        (["--precision", "fp8", "--calib", str(tmp_path / "none")], "--calib .* is not a folder"),
        (["--calib", str(tmp_path)], "--calib .* is given but no graph is fp8"),
        (["--precision", "fp8", "--calib-count", "0"], "--calib-count must be ≥ 1, got 0"),
    ]
    for extra, match in cases:
        result = CliRunner().invoke(app, ["export", "--checkpoint", str(tiny_checkpoint), "--out",
                                          str(tmp_path / "x"), *extra])
        assert result.exit_code != 0
        errors = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and re.search(match, errors[0]), result.output
        assert "Traceback" not in result.output
    assert not (tmp_path / "x").exists()
