"""N1.7 at fp8 and int8 on the tiny preset: plain ``--precision fp8`` / ``int8`` quantise the backbone with
N1.7's own plans (``families/n17/fp8_plan.py``, chosen by sensitivity in verify's feature view: fp8 q/k/v
and gate/up of every decoder layer but the first; int8 every Linear GEMM) and the action-head graphs with N1.6's; the Q/DQ written
are exactly the plan, and the export passes verify with the fp8 row (int8 is held to it). One export per
precision (one embodiment, one image size) serves the module."""

from __future__ import annotations

import re

import onnx
import pytest

from gr00t_trt.contract.manifest import load_manifest
from gr00t_trt.contract.quant_plans import is_planned
from gr00t_trt.export.driver import ExportOptions, export_checkpoint
from gr00t_trt.export.quantize import gemm_nodes, quantized_nodes
from gr00t_trt.families.registry import N17
from gr00t_trt.verification.parity import threshold_for
from gr00t_trt.verification.verify import verify_export

TAG = "libero_sim"
#: the backbone plans written out by hand (GEMMs per layer, first layer): fp8 q/k/v, gate/up of every decoder
#: layer but layer 0; int8 every Linear GEMM of every layer
PLANNED_BACKBONE = {
    "fp8": (re.compile(r"(?:.*\.)?layers\.([1-9]\d*)\.(self_attn\.[qkv]_proj|mlp\.(gate|up)_proj)"), 5, 1),
    "int8": (re.compile(r"(?:.*\.)?layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)"), 7, 0),
}


@pytest.fixture(scope="module", params=["fp8", "int8"])
def n17_quantised(request, n17_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"n17{request.param}") / "export"
    export_checkpoint(n17_checkpoint, out, ExportOptions(precision=request.param, embodiments=(TAG,),
                                                         image_sizes=((256, 352),), max_batch=2))
    return request.param, n17_checkpoint, out


def _graph(export_dir, kind):
    (entry,) = load_manifest(export_dir).graphs_of_kind(kind)
    return entry, onnx.load(str(export_dir / entry.file), load_external_data=False)


LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
           "mlp.up_proj", "mlp.down_proj")


@pytest.mark.parametrize("mode", ["fp8", "int8"])
def test_the_backbone_plan_selects_the_gemms_written_out_by_hand(mode):
    """The plan data against the regex above, on the exported wrapper's paths and the roofline's (no export)."""
    face = N17.export()
    plan, keep = {"fp8": (face.FP8_PLAN, face.FP8_KEEP), "int8": (face.INT8_PLAN, face.INT8_KEEP)}[mode]
    pattern = PLANNED_BACKBONE[mode][0]
    for prefix in ("decoder.llm.", ""):
        for path in (f"{prefix}layers.{i}.{name}" for i in range(16) for name in LINEARS):
            assert is_planned("backbone", path, False, plan, keep) == bool(pattern.fullmatch(path)), path
    assert not is_planned("backbone", "", True, plan, keep)  # the attention matmuls stay fp16


def test_the_quantised_gemms_are_n17s_plan(n17_quantised):
    """The export compares the Q/DQ written with the plan itself (``quantize.check_plan``: an ExportError on
    any difference; ModelOpt's output no longer carries the module paths); here the counts: backbone
    GEMMs per layer x layers (fp8: layer 0 kept), dit_context the stacked cross K/V only (its VL
    self-attention stays fp16), the DiT some but not all."""
    mode, _, export_dir = n17_quantised
    layers = N17.export().preset_config("tiny").select_layer  # the decoder layers the backbone runs
    entry, backbone = _graph(export_dir, "backbone")
    _, per_layer, first = PLANNED_BACKBONE[mode]
    assert entry.precision == mode
    assert len(quantized_nodes(backbone, mode)) == per_layer * (layers - first) < len(gemm_nodes(backbone))
    entry, context = _graph(export_dir, "dit_context")
    assert entry.precision == mode and len(quantized_nodes(context, mode)) == 2 < len(gemm_nodes(context))
    entry, dit = _graph(export_dir, "dit")
    assert entry.precision == mode and 0 < len(quantized_nodes(dit, mode)) < len(gemm_nodes(dit))


def test_the_export_passes_verify_at_the_fp8_row(n17_quantised):
    mode, checkpoint, export_dir = n17_quantised
    report = verify_export(export_dir, checkpoint, backend="ort")
    assert report.passed, report.failures
    features = [c for c in report.comparisons if "backbone features (standardised as VLLN sees them)" in c.stage]
    assert features and all(c.threshold == threshold_for("backbone", "fp8") and c.raw for c in features)
    actions = [c for c in report.comparisons if c.stage.endswith("end-to-end: normalised action")]
    assert actions and all(c.threshold == threshold_for("normalised_action", "fp8") for c in actions)
