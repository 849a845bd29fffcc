"""Prefix conditioning (real-time chunking) through Policy and Pipeline, on ONNX Runtime and the TensorRT
stand-in: the weighted Euler update, frozen rows equal to the prefix, the ramp, options and old exports."""

from __future__ import annotations

import numpy as np
import pytest
from test_runtime_policy import make_policy_export, observation

from gr00t_trt.base.errors import ManifestError, ObservationError
from gr00t_trt.runtime import Policy
from gr00t_trt.runtime.prefix import DEFAULT_RAMP_RATE, PrefixPlan, plan_prefix, row_weights

TAG = "new_embodiment"  # horizon 8 of the graphs' 16 rows, relative end-effector actions


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    root = tmp_path_factory.mktemp("prefix")
    return make_policy_export(root / "new"), make_policy_export(root / "old", step_weight=False)


@pytest.fixture(scope="module")
def policy(exports, new_backend):
    with Policy.load(exports[0].folder, backend=new_backend(exports[0].folder)) as p:
        yield p


@pytest.fixture(scope="module")
def old_policy(exports, new_backend):
    with Policy.load(exports[1].folder, backend=new_backend(exports[1].folder)) as p:
        yield p


def chunk(policy, seed=0, **options):
    """One chunk for the same observation (a prefix relative to a far-away state would leave the relative
    statistics and come back clipped) and the noise of ``seed``."""
    return policy.get_action(observation(0), {"embodiment": TAG, "seed": seed, **options})


# ----------------------------------------------------------------------------------- the ramp
def isaac_ramp(frozen: int, overlap: int, rate: float) -> np.ndarray:
    """Isaac-GR00T's construction, step by step: linspace over m + 2 points, 1 − e^(−r t), normalised by
    the last point, inner points only."""
    t = np.linspace(0.0, 1.0, overlap - frozen + 2)
    ramp = 1 - np.exp(-rate * t)
    return (ramp / max(ramp[-1], 1e-8))[1:-1]


@pytest.mark.parametrize(("frozen", "overlap", "rate"), [(0, 1, 5.0), (2, 8, 5.0), (3, 7, 2.0), (4, 4, 6.0), (0, 16, 0.5)])
def test_row_weights_are_isaac_gr00ts_ramp(frozen, overlap, rate):
    w = row_weights(16, frozen, overlap, rate)
    assert w.dtype == np.float32 and w.shape == (16,)
    assert (w[:frozen] == 0).all() and (w[overlap:] == 1).all()
    np.testing.assert_allclose(w[frozen:overlap], isaac_ramp(frozen, overlap, rate), rtol=1e-6)
    assert ((w[frozen:overlap] > 0) & (w[frozen:overlap] < 1)).all()
    assert (np.diff(w[frozen:overlap]) > 0).all()  # strictly increasing towards the free rows


def test_plan_defaults_and_seed_rows():
    plan = plan_prefix({}, prefix_rows=6, horizon=8)
    assert (plan.overlap, plan.frozen, plan.ramp_rate, plan.start, plan.stop) == (6, 0, DEFAULT_RAMP_RATE, 0, 6)
    plan = plan_prefix({"rtc_overlap_steps": 4, "rtc_frozen_steps": 2, "action_horizon": 5}, 6, 8)
    assert (plan.start, plan.stop) == (1, 5)  # the LAST 4 of the 5 valid rows, as Isaac-GR00T seeds
    noise = np.arange(2 * 16 * 3, dtype=np.float32).reshape(2, 16, 3)
    prefix = -np.ones((2, 6, 2), np.float32) * np.arange(6)[None, :, None]
    x = plan.seed(noise, prefix[:, plan.start:plan.stop])
    np.testing.assert_array_equal(x[:, :4, :2], prefix[:, 1:5])
    assert (x[:, :4, 2] == 0).all()  # padded columns of seeded rows: 0, as training targets are padded
    np.testing.assert_array_equal(x[:, 4:], noise[:, 4:])
    assert isinstance(plan, PrefixPlan) and plan.weights(2, 16).shape == (2, 16)


# ----------------------------------------------------------------------------------- the graphs
def test_pipeline_weighs_each_rows_update_as_the_reference(policy, exports):
    inputs = policy.preprocessor(observation(0), TAG)
    rng = np.random.default_rng(3)
    noise = rng.standard_normal((1, 16, 16), dtype=np.float32)
    weight = rng.uniform(0, 1, (1, 16)).astype(np.float32)
    weight[0, :3] = 0
    got = policy.pipeline.run(inputs, noise, step_weight=weight).copy()
    want = exports[0].reference(inputs, noise, step_weight=weight)["action_pred"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got[0, :3], noise[0, :3])  # weight 0: the row never moves
    plain = exports[0].reference(inputs, noise)["action_pred"]
    assert np.abs(got[0, 3:] - plain[0, 3:]).max() > 1e-3  # the weights did change the free rows' updates


def test_no_prefix_is_bit_identical_to_an_export_without_step_weights(policy, old_policy):
    """Weight 1 multiplies exactly: the same bits as the plain Euler update of an older export."""
    for seed in (0, 1):
        new, info = chunk(policy, seed)
        old, _ = chunk(old_policy, seed)
        assert "prefix" not in info
        for key in new:
            np.testing.assert_array_equal(new[key], old[key])
    inputs = policy.preprocessor(observation(0), TAG)
    noise = np.random.default_rng(0).standard_normal((1, 16, 16), dtype=np.float32)
    ones = policy.pipeline.run(inputs, noise, step_weight=np.ones((1, 16), np.float32)).copy()
    np.testing.assert_array_equal(ones, policy.pipeline.run(inputs, noise))


# ----------------------------------------------------------------------------------- the policy
def test_frozen_rows_equal_the_prefix_and_free_rows_are_untouched(policy):
    first, _ = chunk(policy, 0)
    # 6 rows to continue; taken from rows 0-5 so that each stays inside the per-row relative statistics of
    # the row it seeds for this unmoving state (a moving robot's state follows its chunk, keeping them close)
    prefix = {k: v[:, :6] for k, v in first.items()}
    plain, _ = chunk(policy, 1)
    got, info = chunk(policy, 1, prefix=prefix, rtc_frozen_steps=3)
    assert info["prefix"] == {"overlap": 6, "frozen": 3, "ramp_rate": DEFAULT_RAMP_RATE}
    for key in got:
        np.testing.assert_allclose(got[key][:, :3], prefix[key][:, :3], atol=2e-5, err_msg=key)  # physical units
        assert np.abs(got[key][:, 3:6] - prefix[key][:, 3:6]).max() > 1e-4  # ramp rows are denoised
        # the fake DiT has no self-attention between action rows: rows past the overlap are exactly free rows
        np.testing.assert_array_equal(got[key][:, 6:], plain[key][:, 6:])


def test_a_ramp_row_moves_continuously_from_the_prefix(policy):
    """One row under weights w from 0 to 1: at 0 it is the seeded prefix, at 1 the free denoising of that
    seed, and in between it moves by steps that shrink with the weight's."""
    inputs = policy.preprocessor(observation(0), TAG)
    noise = np.random.default_rng(0).standard_normal((1, 16, 16), dtype=np.float32)
    rows = []
    for w in np.linspace(0.0, 1.0, 21):
        weight = np.ones((1, 16), np.float32)
        weight[0, 0] = w
        rows.append(policy.pipeline.run(inputs, noise, step_weight=weight)[0, 0].copy())
    rows = np.array(rows)
    np.testing.assert_array_equal(rows[0], noise[0, 0])
    steps = np.linalg.norm(np.diff(rows, axis=0), axis=1)
    assert steps.max() < 0.25 * np.linalg.norm(rows[-1] - rows[0])  # no jump: 20 steps, each a small part
    fine = np.linalg.norm(policy.pipeline.run(inputs, noise, step_weight=np.full((1, 16), 0.025, np.float32))[0, 0]
                          - noise[0, 0])
    assert fine < steps[0] * 0.75  # halving the weight near 0 roughly halves the move


def test_overlap_and_isaac_gr00t_names(policy):
    first, _ = chunk(policy, 0)
    # a previous chunk of 4 rows, 3 of them valid (Isaac-GR00T's action_horizon): the seed is its valid rows
    # 1, 2 (first's rows 0, 1, inside the statistics of the rows they seed); rows 0 and 3 must be ignored
    previous = {k: v[:, [7, 0, 1, 6]] for k, v in first.items()}
    got, info = chunk(policy, 2, prefix=previous, action_horizon=3, rtc_overlap_steps=2, rtc_frozen_steps=2,
                      rtc_ramp_rate=2.0)
    assert info["prefix"] == {"overlap": 2, "frozen": 2, "ramp_rate": 2.0}
    for key in got:
        np.testing.assert_allclose(got[key][:, :2], first[key][:, :2], atol=2e-5, err_msg=key)


@pytest.mark.parametrize(("options", "match"), [
    ({"rtc_frozen_steps": 5}, r"rtc_frozen_steps must be an integer in 0\.\.4"),
    ({"rtc_overlap_steps": 5}, r"rtc_overlap_steps must be an integer in 1\.\.4"),
    ({"rtc_ramp_rate": 0}, "rtc_ramp_rate must be a finite number > 0"),
    ({"rtc_frozen_steps": 1.5}, "rtc_frozen_steps must be an integer"),
    ({"action_horizon": 9}, r"action_horizon must be an integer in 1\.\.4"),
])
def test_bad_prefix_options_are_one_line(policy, options, match):
    first, _ = chunk(policy, 0)
    with pytest.raises(ObservationError, match=match) as info:
        chunk(policy, 1, prefix={k: v[:, :4] for k, v in first.items()}, **options)
    assert "\n" not in str(info.value)


def test_prefix_shape_keys_and_missing_prefix_are_one_line(policy):
    first, _ = chunk(policy, 0)
    with pytest.raises(ObservationError, match=r"prefix\['eef'\] has shape \[1, 4, 5\] — expected \[1, n, 6\]"):
        chunk(policy, 1, prefix={**first, "eef": first["eef"][:, :4, :5]})
    with pytest.raises(ObservationError, match="missing"):
        chunk(policy, 1, prefix={"eef": first["eef"]})
    with pytest.raises(ObservationError, match="need the actions to continue"):
        chunk(policy, 1, rtc_frozen_steps=2)


def test_an_old_export_refuses_a_prefix_and_says_to_re_export(old_policy):
    first, _ = chunk(old_policy, 0)
    with pytest.raises(ManifestError, match="no step_weight input .* re-export") as info:
        chunk(old_policy, 1, prefix=first)
    assert "\n" not in str(info.value)
