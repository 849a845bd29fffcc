"""Architecture §7's verification thresholds, stated literally.

The verify and export code read the thresholds from one table; a test that reads the same table checks
nothing about its values. This file writes them out by hand, so loosening one is a visible, reviewed
change to this file as well.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gr00t_trt.verification.parity import (
    Threshold,
    compare,
    compare_features,
    feature_view,
    standardise,
    threshold_for,
)

#: architecture §7, copied by hand: (check, precision) -> bounds
SECTION_7 = {
    ("backbone", "fp32"): Threshold(max_rel_l2=1e-4),
    ("backbone", "fp16"): Threshold(min_cosine=0.999, max_mean_abs=0.01),
    ("backbone", "bf16"): Threshold(min_cosine=0.999, max_mean_abs=0.01),
    ("backbone", "fp8"): Threshold(min_cosine=0.99, max_mean_abs=0.05),
    ("normalised_action", "fp32"): Threshold(max_rel_l2=1e-4),
    ("normalised_action", "fp16"): Threshold(min_cosine=0.99, max_mean_abs=0.05),
    ("normalised_action", "bf16"): Threshold(min_cosine=0.99, max_mean_abs=0.05),
    ("normalised_action", "fp8"): Threshold(min_cosine=0.98, max_mean_abs=0.1),
    ("physical_action", "fp32"): Threshold(max_rel_l2=1e-4),
    ("physical_action", "fp16"): Threshold(min_cosine=0.99),
    ("physical_action", "bf16"): Threshold(min_cosine=0.99),
    ("physical_action", "fp8"): Threshold(min_cosine=0.98),
}


@pytest.mark.parametrize(("check", "precision"), sorted(SECTION_7))
def test_threshold_is_the_one_of_section_7(check, precision):
    # dataclass equality: every bound, including the ones that must stay unchecked (None)
    assert threshold_for(check, precision) == SECTION_7[check, precision]


def test_export_validation_is_as_strict_as_section_7():
    """Each graph is validated right after export: fp32 to rel L2 1e-4, fp16 to cosine 0.999."""
    assert threshold_for("graph", "fp32") == Threshold(max_rel_l2=1e-4)
    assert threshold_for("graph", "fp16") == Threshold(min_cosine=0.999)


def _candidate(reference: np.ndarray, rel_l2: float, seed: int = 0) -> np.ndarray:
    """``reference`` plus noise of exactly ``rel_l2`` relative L2 norm."""
    noise = np.random.default_rng(seed).standard_normal(reference.shape)
    return reference + noise * (rel_l2 * np.linalg.norm(reference) / np.linalg.norm(noise))


def test_bounds_are_applied_on_the_right_side_of_the_limit():
    """Just inside a bound passes, just outside fails: the table's numbers are what compare() enforces."""
    ref = np.random.default_rng(1).standard_normal(4096)
    fp32 = threshold_for("normalised_action", "fp32")
    assert compare("in", ref, _candidate(ref, 0.9e-4), fp32).passed
    assert not compare("out", ref, _candidate(ref, 1.1e-4), fp32).passed
    # cosine of ref and ref + e with |e| = r |ref| (e ⟂ ref on average) is ≈ 1 / sqrt(1 + r²)
    fp16 = Threshold(min_cosine=threshold_for("backbone", "fp16").min_cosine)
    assert compare("in", ref, _candidate(ref, 0.040), fp16).passed  # cosine ≈ 0.9992
    assert not compare("out", ref, _candidate(ref, 0.050), fp16).passed  # cosine ≈ 0.9988


# ---- the feature view: §7's backbone bounds at the scale they were written for (unit scale)


def test_families_declare_their_feature_view():
    """N1.6's features are an RMSNorm's output (identity); N1.7's are read before the final norm (spec §3.6)."""
    from gr00t_trt.families.registry import N16, N17

    assert N16.feature_view == "identity" and N17.feature_view == "standardised"
    assert feature_view(N17.feature_view).transform is standardise
    with pytest.raises(KeyError, match="unknown feature view 'normed' — known: identity, standardised"):
        feature_view("normed")


def test_the_identity_view_gives_the_numbers_of_a_plain_compare():
    ref = 3.0 * np.random.default_rng(2).standard_normal((40, 64))
    cand = _candidate(ref, 0.01)
    plain = compare("features", ref, cand, threshold_for("backbone", "fp16"))
    assert compare_features("features", ref, cand, threshold_for("backbone", "fp16"), "identity") == plain
    assert plain.raw is None


def test_the_standardised_view_is_layernorm_without_affine():
    x = np.random.default_rng(3).standard_normal((5, 7, 32)) * 4 + 1
    want = torch.nn.functional.layer_norm(torch.from_numpy(x), (32,), eps=1e-5).numpy()
    np.testing.assert_allclose(standardise(x), want, rtol=1e-10, atol=1e-12)


def test_a_per_token_scale_and_shift_is_invisible_to_the_view_a_per_channel_error_is_not():
    """What VLLN cannot see (each token scaled and shifted as a whole) passes; what it can (one channel off) fails."""
    rng = np.random.default_rng(4)
    ref = 2.8 * rng.standard_normal((50, 64))
    fp8 = threshold_for("backbone", "fp8")
    per_token = ref * rng.uniform(0.8, 1.25, (50, 1)) + rng.uniform(-0.5, 0.5, (50, 1))
    assert not compare("raw", ref, per_token, fp8).passed  # the raw features differ by ≈ 0.4 on average
    seen = compare_features("f", ref, per_token, fp8, "standardised")
    assert seen.passed and seen.mean_abs < 1e-6 and seen.raw["mean_abs"] > 0.1
    assert seen.stage == "f (standardised as VLLN sees them)"
    per_channel = ref.copy()
    per_channel[:, :8] *= 1.5  # 8 of 64 channels 50 % too large: the LayerNorm's output moves
    failed = compare_features("f", ref, per_channel, fp8, "standardised")
    assert not failed.passed and failed.mean_abs > fp8.max_mean_abs
