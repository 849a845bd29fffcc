"""State normalisation (spec §5.3): formulas, layout, padding and round trips."""

from __future__ import annotations

import numpy as np
import pytest

from gr00t_trt.base.errors import ObservationError
from gr00t_trt.processing.modality import NormParams
from gr00t_trt.processing.state import (
    normalize_meanstd,
    normalize_minmax,
    normalize_state,
    sincos_encode,
    unnormalize_meanstd,
    unnormalize_minmax,
    unnormalize_state,
)

from .conftest import random_state


def params(lo, hi, mean=None, std=None):
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    mean = np.zeros_like(lo) if mean is None else np.asarray(mean, float)
    std = np.ones_like(lo) if std is None else np.asarray(std, float)
    return NormParams(lo, hi, mean, std, lo.shape[-1])


def test_minmax_formula_and_degenerate_features():
    p = params([0.0, -1.0, 3.0], [2.0, 1.0, 3.0 + 1e-12])
    np.testing.assert_allclose(normalize_minmax([[1.0, 1.0, 5.0]], p), [[0.0, 1.0, 0.0]])
    np.testing.assert_allclose(normalize_minmax([[0.0, -1.0, 3.0]], p), [[-1.0, -1.0, 0.0]])


def test_unnormalize_minmax_clips_first():
    p = params([0.0], [10.0])
    np.testing.assert_allclose(unnormalize_minmax([[-3.0], [0.0], [3.0]], p), [[0.0], [5.0], [10.0]])


def test_meanstd_with_zero_std_passes_through():
    p = params([0, 0], [1, 1], mean=[1.0, 5.0], std=[2.0, 0.0])
    np.testing.assert_allclose(normalize_meanstd([[3.0, 7.0]], p), [[1.0, 7.0]])
    np.testing.assert_allclose(unnormalize_meanstd([[1.0, 7.0]], p), [[3.0, 7.0]])


def test_sincos_layout_is_all_sines_then_all_cosines():
    v = np.array([[0.1, 0.2, 0.3]])
    np.testing.assert_allclose(sincos_encode(v), np.concatenate([np.sin(v), np.cos(v)], axis=-1))


def test_layout_padding_and_dtype(synthetic_dir):
    from gr00t_trt.families.n16.processing.modality import load_processor_spec

    spec = load_processor_spec(synthetic_dir).embodiment("unitree_g1")
    state = random_state(spec, 3, np.random.default_rng(0))
    out = normalize_state(state, spec)
    assert out.shape == (3, 1, spec.max_state_dim) and out.dtype == np.float32
    assert (out[..., spec.state_width :] == 0).all()
    arm = spec.state_norm["left_arm"]
    np.testing.assert_allclose(out[..., :5], 2 * (state["left_arm"] - arm.min) / (arm.max - arm.min) - 1, atol=1e-6)
    waist = state["waist"].astype(np.float64)
    np.testing.assert_allclose(out[..., 8:14], np.concatenate([np.sin(waist), np.cos(waist)], -1), atol=1e-6)


def test_out_of_range_state_is_clipped(make_spec):
    spec = make_spec().embodiment("unitree_g1")
    state = random_state(spec, 2, np.random.default_rng(1))
    state["left_arm"][:] = spec.state_norm["left_arm"].max + 100.0
    out = normalize_state(state, spec)
    assert (out[..., :5] == 1.0).all()
    unclipped = make_spec(lambda kw, st, ids: kw.update(clip_outliers=False)).embodiment("unitree_g1")
    assert (normalize_state(state, unclipped)[..., :5] > 1.0).all()


@pytest.mark.parametrize("tag", ["libero_panda", "unitree_g1", "new_embodiment"])
def test_round_trip(synthetic_dir, tag):
    from gr00t_trt.families.n16.processing.modality import load_processor_spec

    spec = load_processor_spec(synthetic_dir).embodiment(tag)
    state = random_state(spec, 4, np.random.default_rng(2))
    if "waist" in state:
        state["waist"] = np.clip(state["waist"], -3.0, 3.0)  # atan2 recovers (-π, π)
    back = unnormalize_state(normalize_state(state, spec), spec)
    for key in spec.state_keys:
        np.testing.assert_allclose(back[key], state[key], atol=2e-5, err_msg=key)


def test_mean_std_state_key_round_trip(synthetic_dir):
    from gr00t_trt.families.n16.processing.modality import load_processor_spec

    spec = load_processor_spec(synthetic_dir).embodiment("new_embodiment")
    assert spec.state_mean_std_keys == ("gripper",)
    g = spec.state_norm["gripper"]
    state = random_state(spec, 1, np.random.default_rng(3))
    out = normalize_state(state, spec)
    np.testing.assert_allclose(out[0, 0, 6], (state["gripper"][0, 0, 0] - g.mean[0]) / g.std[0], rtol=1e-6)


def test_width_mismatch_is_named(make_spec):
    spec = make_spec().embodiment("unitree_g1")
    state = random_state(spec, 1, np.random.default_rng(4))
    state["left_hand"] = np.zeros((1, 1, 4), np.float32)
    with pytest.raises(ObservationError, match=r"state key 'left_hand' has width 4, expected 3"):
        normalize_state(state, spec)
    del state["left_hand"]
    with pytest.raises(ObservationError, match=r"state key 'left_hand' is missing"):
        normalize_state(state, spec)


def _reference_style_state(values, p, mean_std, clip):
    """Isaac-GR00T's formulas as it writes them (zeros_like in the input dtype, masked assignment)."""
    out = np.zeros_like(values)
    if mean_std:
        mask = p.std != 0
        out[..., mask] = (values[..., mask] - p.mean[..., mask]) / p.std[..., mask]
        out[..., ~mask] = values[..., ~mask]
        return out
    mask = ~np.isclose(p.max, p.min)
    out[..., mask] = (values[..., mask] - p.min[..., mask]) / (p.max[..., mask] - p.min[..., mask])
    out[..., mask] = 2 * out[..., mask] - 1
    return np.clip(out, -1.0, 1.0) if clip else out


@pytest.mark.parametrize("mean_std", [False, True])
def test_bit_exact_against_the_reference_formulas(mean_std):
    rng = np.random.default_rng(5)
    lo = rng.uniform(-2, 0, 64)
    hi = lo + rng.uniform(0.01, 3, 64)
    hi[::7] = lo[::7]  # degenerate features
    std = rng.uniform(0.1, 2, 64)
    std[::5] = 0.0
    p = NormParams(lo, hi, rng.uniform(-1, 1, 64), std, 64)
    values = rng.uniform(-3, 3, size=(8, 1, 64)).astype(np.float32)
    ours = normalize_meanstd(values, p) if mean_std else np.clip(normalize_minmax(values, p), -1.0, 1.0)
    assert ours.dtype == np.float32
    np.testing.assert_array_equal(ours, _reference_style_state(values, p, mean_std, clip=True))
