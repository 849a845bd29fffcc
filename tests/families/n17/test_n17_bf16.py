"""N1.7 at bf16 on the tiny preset: make-checkpoint → export --precision bf16 → verify passes. ONNX Runtime
has no bf16 kernels, so verify checks each graph at bf16 in PyTorch (the CPU preflight); the backbone's
pre-norm features are judged in the family's feature view (as VLLN sees them), where bf16 itself lands
(mean abs ≈ 0.006 against 0.0165 raw; §7's fp16/bf16 bound 0.01 is a unit-scale bound)."""

from __future__ import annotations

import pytest

from gr00t_trt.export.driver import ExportOptions, export_checkpoint
from gr00t_trt.verification.parity import threshold_for
from gr00t_trt.verification.verify import verify_export


@pytest.fixture(scope="module")
def n17_bf16(n17_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("n17bf16") / "export"
    export_checkpoint(n17_checkpoint, out,
                      ExportOptions(precision="bf16", embodiments=("libero_sim",), image_sizes=((256, 352),), max_batch=2))
    return n17_checkpoint, out


def test_bf16_export_passes_verify_with_features_in_the_view(n17_bf16):
    checkpoint, export_dir = n17_bf16
    report = verify_export(export_dir, checkpoint, backend="ort")
    assert report.passed, report.failures
    features = [c for c in report.comparisons if c.stage.endswith("backbone features (standardised as VLLN sees them)")]
    assert features and all(c.threshold == threshold_for("backbone", "bf16") for c in features)
    # the raw metrics ride along: bf16 rounding of pre-norm features, well over the unit-scale bound raw
    assert all(c.raw["mean_abs"] > c.mean_abs and c.raw["cosine"] > 0.9999 for c in features)
