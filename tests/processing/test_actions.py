"""Action decoding (spec §4.10): rotations, relative <-> absolute, unnormalisation, slicing, round trips."""

from __future__ import annotations

import numpy as np
import pytest

from gr00t_trt.base.errors import ObservationError
from gr00t_trt.families.n16.processing.modality import load_processor_spec
from gr00t_trt.processing.actions import (
    absolute_to_relative,
    decode_actions,
    encode_actions,
    encode_prefix,
    matrix_to_rot6d,
    matrix_to_rotvec,
    relative_to_absolute,
    rot6d_to_matrix,
    rotvec_to_matrix,
)
from gr00t_trt.processing.modality import ActionFormat, ActionType

from .conftest import random_state


def random_rotations(n: int, rng) -> np.ndarray:
    axis = rng.normal(size=(n, 3))
    axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
    return rotvec_to_matrix(axis * rng.uniform(0, np.pi, size=(n, 1)))


def test_rotvec_known_value_and_orthonormality():
    np.testing.assert_allclose(rotvec_to_matrix([0, 0, np.pi / 2]), [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-15)
    m = random_rotations(100, np.random.default_rng(0))
    np.testing.assert_allclose(m @ np.swapaxes(m, -1, -2), np.broadcast_to(np.eye(3), m.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(m), 1.0, atol=1e-12)


@pytest.mark.parametrize("angle", [0.0, 1e-9, 0.3, 2.0, np.pi - 1e-7, np.pi])
def test_rotvec_round_trip(angle):
    rng = np.random.default_rng(1)
    axis = rng.normal(size=(20, 3))
    axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
    rotvec = axis * angle
    back = matrix_to_rotvec(rotvec_to_matrix(rotvec))
    # at π, v and −v are the same rotation
    np.testing.assert_allclose(rotvec_to_matrix(back), rotvec_to_matrix(rotvec), atol=1e-9)
    if angle < 3.0:
        np.testing.assert_allclose(back, rotvec, atol=1e-9)


def test_rot6d_is_the_first_two_rows():
    m = random_rotations(50, np.random.default_rng(2))
    np.testing.assert_array_equal(matrix_to_rot6d(m), m[:, :2, :].reshape(50, 6))
    np.testing.assert_allclose(rot6d_to_matrix(matrix_to_rot6d(m)), m, atol=1e-12)
    # Gram–Schmidt on rows: scaling/skewing row 2 along row 1 does not change the result
    r6 = matrix_to_rot6d(m).reshape(50, 2, 3)
    skewed = np.stack([3.0 * r6[:, 0], r6[:, 1] + 0.4 * r6[:, 0]], axis=1).reshape(50, 6)
    np.testing.assert_allclose(rot6d_to_matrix(skewed), m, atol=1e-12)


def test_relative_eef_is_reference_inverse_times_pose():
    rng = np.random.default_rng(3)
    ref_r, pose_r = random_rotations(1, rng)[0], random_rotations(1, rng)[0]
    ref = np.concatenate([[0.1, 0.2, 0.3], ref_r[:2].ravel()])[None]
    pose = np.concatenate([[0.4, -0.1, 0.5], pose_r[:2].ravel()])[None, None]
    rel = absolute_to_relative(pose, ref, ActionType.EEF, ActionFormat.XYZ_ROT6D)[0, 0]
    np.testing.assert_allclose(rel[:3], ref_r.T @ (np.array([0.4, -0.1, 0.5]) - [0.1, 0.2, 0.3]), atol=1e-12)
    np.testing.assert_allclose(rel[3:], (ref_r.T @ pose_r)[:2].ravel(), atol=1e-12)


@pytest.mark.parametrize(
    ("action_type", "fmt", "dim"),
    [(ActionType.NON_EEF, ActionFormat.DEFAULT, 7), (ActionType.EEF, ActionFormat.XYZ_ROT6D, 9),
     (ActionType.EEF, ActionFormat.XYZ_ROTVEC, 6)],
)  # fmt: skip
def test_relative_absolute_round_trip(action_type, fmt, dim):
    rng = np.random.default_rng(4)
    batch, horizon = 3, 10
    if action_type is ActionType.NON_EEF:
        absolute, reference = rng.normal(size=(batch, horizon, dim)), rng.normal(size=(batch, dim))
    else:
        def poses(n):
            rot = random_rotations(n, rng)
            tail = matrix_to_rot6d(rot) if fmt is ActionFormat.XYZ_ROT6D else matrix_to_rotvec(rot)
            return np.concatenate([rng.normal(size=(n, 3)), tail], axis=-1)

        absolute, reference = poses(batch * horizon).reshape(batch, horizon, dim), poses(batch)
    relative = absolute_to_relative(absolute, reference, action_type, fmt)
    back = relative_to_absolute(relative, reference, action_type, fmt)
    np.testing.assert_allclose(back, absolute, atol=1e-9)
    np.testing.assert_allclose(absolute_to_relative(back, reference, action_type, fmt), relative, atol=1e-9)


@pytest.fixture(scope="module")
def spec(synthetic_dir):
    return load_processor_spec(synthetic_dir)


def physical_actions(emb, batch, rng, raw_state):
    """Actions the decoder can reproduce: relative values inside the relative statistics."""
    out = {}
    for key in emb.action_keys:
        p = emb.action_norm[key]
        lo, hi = np.broadcast_to(p.min, (emb.action_horizon, p.dim)), np.broadcast_to(p.max, (emb.action_horizon, p.dim))
        values = rng.uniform(lo + 0.05 * (hi - lo), hi - 0.05 * (hi - lo), size=(batch, emb.action_horizon, p.dim))
        if emb.is_relative(key):
            cfg = emb.action_configs[key]
            if cfg.format is ActionFormat.XYZ_ROT6D:  # a proper rot6d: small rotations stay inside the stats
                small = rng.uniform(-0.008, 0.008, size=values.shape[:-1] + (3,))
                values[..., 3:] = matrix_to_rot6d(rotvec_to_matrix(small))
            values = relative_to_absolute(values, raw_state[cfg.state_key][:, -1], cfg.type, cfg.format)
        out[key] = values.astype(np.float32)
    return out


@pytest.mark.parametrize("tag", ["libero_panda", "unitree_g1", "new_embodiment"])
def test_encode_decode_round_trip(spec, tag):
    emb = spec.embodiment(tag)
    rng = np.random.default_rng(5)
    raw_state = random_state(emb, 2, rng)
    actions = physical_actions(emb, 2, rng, raw_state)
    encoded = encode_actions(actions, emb, raw_state)
    assert encoded.shape == (2, emb.action_horizon, emb.max_action_dim) and encoded.dtype == np.float32
    assert (encoded[..., emb.action_width :] == 0).all()
    decoded = decode_actions(encoded, emb, raw_state)
    for key in emb.action_keys:
        assert decoded[key].shape == (2, emb.action_horizon, emb.action_dims[key]) and decoded[key].dtype == np.float32
        np.testing.assert_allclose(decoded[key], actions[key], atol=2e-5, err_msg=key)


#: every action representation the decoder supports: min/max (N1.6), q01/q99 (N1.7's percentiles), with and
#: without relative actions (joint and end-effector, rot6d and rotvec, per-step statistics)
SETTINGS = {"minmax-relative": {}, "q01q99-relative": {"use_percentiles": True},
            "minmax-absolute": {"use_relative_action": False},
            "q01q99-absolute": {"use_percentiles": True, "use_relative_action": False}}


@pytest.mark.parametrize("flat", [False, True], ids=["nested", "flat"])
@pytest.mark.parametrize("tag", ["libero_panda", "unitree_g1", "new_embodiment"])
@pytest.mark.parametrize("settings", list(SETTINGS.values()), ids=list(SETTINGS))
def test_encode_prefix_exactly_inverts_decoding(make_spec, settings, tag, flat):
    """decode(encode(a)) == a for a prefix of the first n rows, with the current state as the reference."""
    emb = make_spec(lambda kw, st, ids: kw.update(**settings)).embodiment(tag)
    rng = np.random.default_rng(11)
    raw_state = random_state(emb, 2, rng)
    actions = physical_actions(emb, 2, rng, raw_state)
    n = emb.action_horizon - 3
    prefix = {(f"action.{k}" if flat else k): v[:, :n] for k, v in actions.items()}
    normalised = encode_prefix(prefix, emb, raw_state, 2, flat=flat)
    assert normalised.shape == (2, n, emb.max_action_dim) and normalised.dtype == np.float32
    chunk = np.zeros((2, emb.action_horizon, emb.max_action_dim), np.float32)
    chunk[:, :n] = normalised
    decoded = decode_actions(chunk, emb, raw_state)
    for key in emb.action_keys:
        np.testing.assert_allclose(decoded[key][:, :n], actions[key][:, :n], atol=2e-5, err_msg=key)


def test_encode_prefix_errors_name_the_key_and_the_expected_shape(spec):
    emb = spec.embodiment("new_embodiment")
    rng = np.random.default_rng(2)
    raw_state = random_state(emb, 1, rng)
    good = {k: v[:, :4] for k, v in physical_actions(emb, 1, rng, raw_state).items()}
    first = emb.action_keys[0]
    cases = [
        ([1, 2], "prefix must be a dict"),
        ({k: v for k, v in good.items() if k != first}, "missing"),
        ({**good, "tail": good[first]}, "unknown"),
        ({**good, first: good[first][..., :-1]}, rf"prefix\['{first}'\] has shape"),
        ({**good, first: good[first][:, :3]}, "the same rows"),
        ({**good, first: np.concatenate([good[first]] * 10, axis=1)}, "rows"),
        ({**good, first: np.full_like(good[first], np.nan)}, "NaN"),
        ({**good, first: good[first].astype(np.int64)}, "float array"),
    ]
    for prefix, match in cases:
        with pytest.raises(ObservationError, match=match) as info:
            encode_prefix(prefix, emb, raw_state, 1)
        assert "\n" not in str(info.value)
    with pytest.raises(ObservationError, match="action.eef"):  # a flat observation answers flat keys
        encode_prefix(good, emb, raw_state, 1, flat=True)


def test_decode_slices_horizon_and_ignores_padding(spec):
    emb = spec.embodiment("new_embodiment")  # horizon 8 < model horizon 16
    rng = np.random.default_rng(6)
    raw_state = random_state(emb, 1, rng)
    pred = rng.uniform(-1, 1, size=(1, 16, 16)).astype(np.float32)
    garbage = pred.copy()
    garbage[:, emb.action_horizon :] = 50.0
    garbage[..., emb.action_width :] = -50.0
    a, b = decode_actions(pred, emb, raw_state), decode_actions(garbage, emb, raw_state)
    for key in emb.action_keys:
        assert a[key].shape[1] == 8
        np.testing.assert_array_equal(a[key], b[key])


def test_minmax_keys_clip_and_meanstd_keys_do_not(spec):
    emb = spec.embodiment("libero_panda")  # gripper: mean/std, eef_pose: relative min/max
    raw_state = random_state(emb, 1, np.random.default_rng(7))
    pred = np.zeros((1, emb.action_horizon, 16), np.float32)
    pred[..., :9], pred[..., 9] = 5.0, 5.0
    out = decode_actions(pred, emb, raw_state)
    g = emb.action_norm["gripper"]
    np.testing.assert_allclose(out["gripper"][..., 0], 5.0 * g.std[0] + g.mean[0], rtol=1e-6)
    clipped = pred.copy()
    clipped[..., :9] = 1.0
    np.testing.assert_array_equal(out["eef_pose"], decode_actions(clipped, emb, raw_state)["eef_pose"])


def test_joint_relative_adds_the_last_raw_state(spec):
    emb = spec.embodiment("unitree_g1")
    rng = np.random.default_rng(8)
    raw_state = random_state(emb, 2, rng)
    pred = rng.uniform(-1, 1, size=(2, 16, 16)).astype(np.float32)
    out = decode_actions(pred, emb, raw_state)
    rel = emb.action_norm["left_arm"]
    expected = (np.clip(pred[:, : emb.action_horizon, :5].astype(np.float64), -1, 1) + 1) / 2 * (rel.max - rel.min) + rel.min
    np.testing.assert_allclose(out["left_arm"], expected + raw_state["left_arm"][:, -1:, :], rtol=1e-5, atol=1e-6)
    hand = emb.action_norm["left_hand"]  # absolute key: absolute statistics, no state added
    np.testing.assert_allclose(out["left_hand"], (pred[:, :16, 5:8] + 1) / 2 * (hand.max - hand.min) + hand.min, rtol=1e-5)


def test_without_relative_actions_nothing_is_added(make_spec):
    emb = make_spec(lambda kw, st, ids: kw.update(use_relative_action=False)).embodiment("unitree_g1")
    raw_state = random_state(emb, 1, np.random.default_rng(9))
    pred = np.zeros((1, 16, 16), np.float32)
    p = emb.action_norm["left_arm"]
    np.testing.assert_allclose(decode_actions(pred, emb, {})["left_arm"][0, 0], (p.min + p.max) / 2, rtol=1e-6)
    assert p.min.shape == (5,) and raw_state  # absolute statistics, raw state not needed


def test_decode_errors(spec):
    emb = spec.embodiment("unitree_g1")
    with pytest.raises(ObservationError, match=r"action_pred must be \[B, ≥16, ≥8\] for embodiment 'unitree_g1', got \[1, 4, 16\]"):
        decode_actions(np.zeros((1, 4, 16), np.float32), emb, {})
    with pytest.raises(ObservationError, match=r"relative action 'left_arm' needs the raw state 'left_arm', which is missing"):
        decode_actions(np.zeros((1, 16, 16), np.float32), emb, {})
    with pytest.raises(ObservationError, match=r"raw state 'left_arm' must be \[1, T, 5\]"):
        decode_actions(np.zeros((1, 16, 16), np.float32), emb, {"left_arm": np.zeros((1, 1, 4), np.float32)})
