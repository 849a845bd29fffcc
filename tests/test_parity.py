"""Architecture §7's verification thresholds, stated literally.

The verify and export code read the thresholds from one table; a test that reads the same table checks
nothing about its values. This file writes them out by hand, so loosening one is a visible, reviewed
change to this file as well.
"""

from __future__ import annotations

import numpy as np
import pytest

from gr00t_trt.verification.parity import Threshold, compare, threshold_for

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
