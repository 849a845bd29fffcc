"""N1.7 at fp8 on the tiny preset: the backbone has no fp8 plan (``families/n17/fp8_plan.py``: the
pre-norm features leave no useful plan under §7's absolute bound), so an fp8 export names it and
takes ``backbone=fp16``; the quantiser writes Q/DQ on exactly the planned GEMMs of the action-head
graphs, and the export passes verify with the fp8 row on the actions."""

from __future__ import annotations

import onnx
import pytest

from gr00t_trt.base.errors import ExportError
from gr00t_trt.contract.manifest import load_manifest
from gr00t_trt.export.driver import ExportOptions, export_checkpoint
from gr00t_trt.export.quantize import gemm_nodes, quantized_nodes
from gr00t_trt.families.n17.fp8_plan import FP8_KEEP, FP8_PLAN
from gr00t_trt.families.registry import N17
from gr00t_trt.verification.parity import threshold_for
from gr00t_trt.verification.verify import verify_export

FP8 = ExportOptions(precision="fp8", graph_precision="backbone=fp16", image_sizes=((256, 352),), max_batch=2)


@pytest.fixture(scope="module")
def n17_fp8(tmp_path_factory):
    root = tmp_path_factory.mktemp("n17fp8")
    checkpoint = N17.export().make_checkpoint(root / "ckpt", "tiny", seed=0)
    export_checkpoint(checkpoint, root / "export", FP8)
    return checkpoint, root / "export"


def test_fp8_without_a_backbone_precision_is_refused_naming_it(n17_fp8, tmp_path):
    checkpoint, _ = n17_fp8
    with pytest.raises(ExportError, match="no quantisation plan for backbone at fp8 .*--graph-precision"):
        export_checkpoint(checkpoint, tmp_path / "out", ExportOptions(precision="fp8"))
    assert not list(tmp_path.iterdir())


def test_the_quantised_gemms_are_n17s_plan(n17_fp8):
    """The export itself compares the Q/DQ written with the plan (``quantize.check_plan``, an ExportError
    on any difference); here: the planned graphs are fp8, the stacked cross K/V are dit_context's only
    fp8 GEMMs (its VL self-attention stays fp16), and the backbone carries no Q/DQ."""
    _, export_dir = n17_fp8
    manifest = load_manifest(export_dir)
    assert set(FP8_PLAN) == {"dit_context", "dit"} and not FP8_KEEP
    quantised = {}
    for kind in ("backbone", "dit_context", "dit"):
        (entry,) = manifest.graphs_of_kind(kind)
        assert entry.precision == ("fp16" if kind == "backbone" else "fp8"), kind
        model = onnx.load(str(export_dir / entry.file), load_external_data=False)
        quantised[kind] = (len(quantized_nodes(model)), len(gemm_nodes(model)))
    assert quantised["backbone"][0] == 0 and quantised["dit_context"][0] == 2 < quantised["dit_context"][1]
    assert 0 < quantised["dit"][0] < quantised["dit"][1]  # not proj_out_2, nor the attention (head dim 8)


def test_fp8_export_passes_verify(n17_fp8):
    checkpoint, export_dir = n17_fp8
    report = verify_export(export_dir, checkpoint, backend="ort", seeds=2)
    assert report.passed, report.failures
    actions = [c for c in report.comparisons if c.stage.endswith("end-to-end: normalised action")]
    assert actions and all(c.threshold == threshold_for("normalised_action", "fp8") for c in actions)
