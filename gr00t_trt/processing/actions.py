"""Model output -> physical actions (spec §4.10), and the forward direction for round-trip tests.

Decoding: slice each action key over the embodiment's own horizon and width, unnormalise (mean/std
keys: x·std + mean; others: clip to [-1, 1] then min/max), and turn RELATIVE keys into absolute ones
with the last raw state of their reference key: joints add it; end-effector poses compose homogeneous
transforms T_ref·T_rel (rot6d = first two *rows* of R, rebuilt by Gram–Schmidt; rotvec = axis·angle).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..base.errors import NonFiniteActionError, ObservationError
from .modality import ActionFormat, ActionType, EmbodimentSpec, NormParams
from .state import normalize_meanstd, normalize_minmax, unnormalize_meanstd, unnormalize_minmax


# ------------------------------------------------------------------------------------------ rotations
def rot6d_to_matrix(rot6d: np.ndarray) -> np.ndarray:
    """[..., 6] (rows r1, r2 of R) -> [..., 3, 3]; Gram–Schmidt, third row r1 × r2."""
    rows = np.asarray(rot6d, dtype=np.float64).reshape(*np.shape(rot6d)[:-1], 2, 3)
    r1 = rows[..., 0, :] / np.linalg.norm(rows[..., 0, :], axis=-1, keepdims=True)
    r2 = rows[..., 1, :] - np.sum(r1 * rows[..., 1, :], axis=-1, keepdims=True) * r1
    r2 = r2 / np.linalg.norm(r2, axis=-1, keepdims=True)
    return np.stack([r1, r2, np.cross(r1, r2)], axis=-2)


def matrix_to_rot6d(matrix: np.ndarray) -> np.ndarray:
    """[..., 3, 3] -> [..., 6]: the first two rows, flattened."""
    matrix = np.asarray(matrix)
    return matrix[..., :2, :].reshape(*matrix.shape[:-2], 6)


def rotvec_to_matrix(rotvec: np.ndarray) -> np.ndarray:
    """[..., 3] axis·angle -> [..., 3, 3] (Rodrigues, series form near 0)."""
    v = np.asarray(rotvec, dtype=np.float64)
    theta = np.linalg.norm(v, axis=-1)[..., None, None]
    small = theta < 1e-6
    safe = np.where(small, 1.0, theta)
    a = np.where(small, 1.0 - theta**2 / 6.0, np.sin(safe) / safe)  # sin θ / θ
    b = np.where(small, 0.5 - theta**2 / 24.0, (1.0 - np.cos(safe)) / safe**2)  # (1 − cos θ) / θ²
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    zero = np.zeros_like(x)
    k = np.stack([np.stack([zero, -z, y], -1), np.stack([z, zero, -x], -1), np.stack([-y, x, zero], -1)], -2)
    return np.eye(3) + a * k + b * (k @ k)


def matrix_to_rotvec(matrix: np.ndarray) -> np.ndarray:
    """[..., 3, 3] -> [..., 3] axis·angle with angle in [0, π] (via a unit quaternion, robust near π)."""
    q = _matrix_to_quat(np.asarray(matrix, dtype=np.float64))  # [..., 4] as (x, y, z, w), w ≥ 0
    vec = q[..., :3]
    s = np.linalg.norm(vec, axis=-1)
    angle = 2.0 * np.arctan2(s, q[..., 3])
    small = s < 1e-12
    scale = np.where(small, 2.0 / np.where(q[..., 3] == 0, 1.0, q[..., 3]), angle / np.where(small, 1.0, s))
    return vec * scale[..., None]


def _matrix_to_quat(m: np.ndarray) -> np.ndarray:
    """Shepperd's method, vectorised: of the four candidate formulas use the one whose pivot (a diagonal
    term or the trace) is largest; returns (x, y, z, w) with w ≥ 0."""
    r = m
    trace = r[..., 0, 0] + r[..., 1, 1] + r[..., 2, 2]
    cands = np.empty(m.shape[:-2] + (4, 4))  # [..., candidate, xyzw]
    w = 0.5 * np.sqrt(np.maximum(1.0 + trace, 1e-300))
    cands[..., 3, :] = np.stack(
        [(r[..., 2, 1] - r[..., 1, 2]) / (4 * w), (r[..., 0, 2] - r[..., 2, 0]) / (4 * w),
         (r[..., 1, 0] - r[..., 0, 1]) / (4 * w), w], axis=-1)  # fmt: skip
    for i0 in range(3):
        i1, i2 = (i0 + 1) % 3, (i0 + 2) % 3
        a = 0.5 * np.sqrt(np.maximum(1.0 + r[..., i0, i0] - r[..., i1, i1] - r[..., i2, i2], 1e-300))
        cands[..., i0, i0] = a
        cands[..., i0, i1] = (r[..., i1, i0] + r[..., i0, i1]) / (4 * a)
        cands[..., i0, i2] = (r[..., i2, i0] + r[..., i0, i2]) / (4 * a)
        cands[..., i0, 3] = (r[..., i2, i1] - r[..., i1, i2]) / (4 * a)
    pivots = np.stack([r[..., 0, 0], r[..., 1, 1], r[..., 2, 2], trace], axis=-1)
    choice = np.argmax(pivots, axis=-1)[..., None, None]
    q = np.take_along_axis(cands, choice, axis=-2)[..., 0, :]
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    return np.where(q[..., 3:] < 0, -q, q)


def pose_to_matrix(pose: np.ndarray, fmt: ActionFormat) -> np.ndarray:
    """[..., 9] xyz+rot6d or [..., 6] xyz+rotvec -> homogeneous [..., 4, 4]."""
    pose = np.asarray(pose, dtype=np.float64)
    rot = rot6d_to_matrix(pose[..., 3:9]) if fmt is ActionFormat.XYZ_ROT6D else rotvec_to_matrix(pose[..., 3:6])
    out = np.zeros(pose.shape[:-1] + (4, 4))
    out[..., :3, :3] = rot
    out[..., :3, 3] = pose[..., :3]
    out[..., 3, 3] = 1.0
    return out


def matrix_to_pose(matrix: np.ndarray, fmt: ActionFormat) -> np.ndarray:
    """Homogeneous [..., 4, 4] -> [..., 9] xyz+rot6d or [..., 6] xyz+rotvec."""
    rot = matrix[..., :3, :3]
    tail = matrix_to_rot6d(rot) if fmt is ActionFormat.XYZ_ROT6D else matrix_to_rotvec(rot)
    return np.concatenate([matrix[..., :3, 3], tail], axis=-1)


def _invert(t: np.ndarray) -> np.ndarray:
    out = np.zeros_like(t)
    rot_t = np.swapaxes(t[..., :3, :3], -1, -2)
    out[..., :3, :3] = rot_t
    out[..., :3, 3] = -(rot_t @ t[..., :3, 3, None])[..., 0]
    out[..., 3, 3] = 1.0
    return out


#: a rot6d row shorter than this (or two rows this close to parallel) has no defined rotation
DEGENERATE_ROTATION_EPS = 1e-6


def degenerate_rot6d(rot6d: np.ndarray) -> np.ndarray:
    """bool [...]: rows r1, r2 of [..., 6] cannot be orthonormalised (zero length, parallel, non-finite)."""
    rows = np.asarray(rot6d, dtype=np.float64).reshape(*np.shape(rot6d)[:-1], 2, 3)
    n1, n2 = np.linalg.norm(rows[..., 0, :], axis=-1), np.linalg.norm(rows[..., 1, :], axis=-1)
    sine = np.linalg.norm(np.cross(rows[..., 0, :], rows[..., 1, :]), axis=-1) / np.maximum(n1 * n2, 1e-300)
    bad = (n1 < DEGENERATE_ROTATION_EPS) | (n2 < DEGENERATE_ROTATION_EPS) | (sine < DEGENERATE_ROTATION_EPS)
    return bad | ~np.isfinite(rows).all(axis=(-1, -2))


def check_reference_rotations(raw_state: Mapping[str, np.ndarray], spec: EmbodimentSpec, flat: bool = False) -> None:
    """Refuse a state whose pose, used as the reference frame of relative end-effector actions, holds a
    degenerate rotation (e.g. an all-zero rot6d): decoding would turn every action into NaN."""
    for key in spec.action_keys:
        if not spec.is_relative(key):
            continue
        cfg = spec.action_configs[key]
        if cfg.type is not ActionType.EEF or cfg.state_key not in raw_state:
            continue
        pose = np.asarray(raw_state[cfg.state_key])
        if cfg.format is ActionFormat.XYZ_ROT6D:
            bad, what = degenerate_rot6d(pose[..., 3:9]), "rot6d rows of zero length or parallel"
        else:
            bad, what = ~np.isfinite(pose[..., 3:6]).all(axis=-1), "a non-finite rotation vector"
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            name = f"'state.{cfg.state_key}'" if flat else f"state[{cfg.state_key!r}]"
            raise ObservationError(
                f"{name} holds a degenerate rotation at [batch, step] {list(where)} ({what}) — expected a valid "
                f"{cfg.format.value} end-effector pose; relative action {key!r} is expressed in this frame"
            )


# ------------------------------------------------------------------------------------------ relative
def relative_to_absolute(
    relative: np.ndarray, reference: np.ndarray, action_type: ActionType, fmt: ActionFormat
) -> np.ndarray:
    """relative [B, H, D], reference state [B, D] -> absolute [B, H, D] (float64)."""
    relative = np.asarray(relative, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if action_type is ActionType.NON_EEF:
        return relative + reference[:, None, :]
    t_ref = pose_to_matrix(reference, fmt)[:, None]  # [B, 1, 4, 4]
    return matrix_to_pose(t_ref @ pose_to_matrix(relative, fmt), fmt)


def absolute_to_relative(
    absolute: np.ndarray, reference: np.ndarray, action_type: ActionType, fmt: ActionFormat
) -> np.ndarray:
    """absolute [B, H, D], reference state [B, D] -> relative [B, H, D]: T_ref⁻¹·T_t for poses."""
    absolute = np.asarray(absolute, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if action_type is ActionType.NON_EEF:
        return absolute - reference[:, None, :]
    t_ref_inv = _invert(pose_to_matrix(reference, fmt))[:, None]  # [B, 1, 4, 4]
    return matrix_to_pose(t_ref_inv @ pose_to_matrix(absolute, fmt), fmt)


# ------------------------------------------------------------------------------------------ decoding
def decode_actions(
    action_pred: np.ndarray, spec: EmbodimentSpec, raw_state: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Normalised, padded action_pred [B, H, D] -> {action key: float32 [B, H_g, dim]} (physical).

    ``raw_state`` is the observation's state {key: [B, T, D]} as given (the last step is the reference).
    """
    action_pred = np.asarray(action_pred)
    if action_pred.ndim != 3 or action_pred.shape[1] < spec.action_horizon or action_pred.shape[2] < spec.action_width:
        raise ObservationError(
            f"action_pred must be [B, ≥{spec.action_horizon}, ≥{spec.action_width}] for embodiment {spec.tag!r}, "
            f"got {list(action_pred.shape)}"
        )
    horizon, batch = spec.action_horizon, action_pred.shape[0]
    used = action_pred[:, :horizon, : spec.action_width]
    if not np.isfinite(used).all():
        raise NonFiniteActionError(
            f"the model produced {int((~np.isfinite(used)).sum())} non-finite values (NaN/inf) in its normalised "
            f"actions for {spec.tag!r} — refusing to return them; the export or its weights may be damaged "
            "(run `gr00t-trt verify`)"
        )
    out: dict[str, np.ndarray] = {}
    offset = 0
    for key in spec.action_keys:
        params = spec.action_norm[key]
        part = action_pred[:, :horizon, offset : offset + params.dim]  # [B, H_g, dim]
        offset += params.dim
        stats = _stats_for_horizon(params, horizon)
        if key in spec.action_mean_std_keys:
            values = unnormalize_meanstd(part, stats)
        else:
            values = unnormalize_minmax(part, stats)
        if spec.is_relative(key):
            cfg = spec.action_configs[key]
            reference = _reference_state(raw_state, cfg.state_key, key, batch, params.dim)
            values = relative_to_absolute(values, reference, cfg.type, cfg.format)
        values = values.astype(np.float32)
        if not np.isfinite(values).all():
            raise NonFiniteActionError(
                f"decoding action {key!r} of {spec.tag!r} gave {int((~np.isfinite(values)).sum())} non-finite values "
                "from finite model output — refusing to return them; check the statistics and the reference state"
            )
        out[key] = values
    return out


def encode_actions(
    actions: Mapping[str, np.ndarray], spec: EmbodimentSpec, raw_state: Mapping[str, np.ndarray]
) -> np.ndarray:
    """Physical actions {key: [B, H_g, dim]} -> normalised float32 [B, H_g, max_action_dim]
    (absolute -> relative, then normalise, as N1.6 prepares training targets)."""
    parts = []
    for key in spec.action_keys:
        params = spec.action_norm[key]
        values = np.asarray(actions[key], dtype=np.float64)
        if spec.is_relative(key):
            cfg = spec.action_configs[key]
            reference = _reference_state(raw_state, cfg.state_key, key, values.shape[0], params.dim)
            values = absolute_to_relative(values, reference, cfg.type, cfg.format)
        stats = _stats_for_horizon(params, values.shape[1])
        if key in spec.action_mean_std_keys:
            part = normalize_meanstd(values, stats)
        else:
            part = normalize_minmax(values, stats)
            if spec.clip_outliers:
                part = np.clip(part, -1.0, 1.0)
        parts.append(part)
    joined = np.concatenate(parts, axis=-1)
    out = np.zeros(joined.shape[:-1] + (spec.max_action_dim,), dtype=np.float32)
    out[..., : joined.shape[-1]] = joined  # zero-pad to max_action_dim
    return out


def _stats_for_horizon(params: NormParams, horizon: int) -> NormParams:
    """Per-timestep [H, dim] statistics are cut to the decoded horizon; [dim] ones broadcast."""
    if params.min.ndim == 1:
        return params
    return NormParams(params.min[:horizon], params.max[:horizon], params.mean[:horizon], params.std[:horizon], params.dim)


def _reference_state(raw_state: Mapping[str, np.ndarray], state_key: str, action_key: str, batch: int, dim: int):
    if state_key not in raw_state:
        raise ObservationError(f"relative action {action_key!r} needs the raw state {state_key!r}, which is missing")
    state = np.asarray(raw_state[state_key])
    if state.ndim != 3 or state.shape[0] != batch or state.shape[2] != dim:
        raise ObservationError(
            f"raw state {state_key!r} must be [{batch}, T, {dim}] to decode action {action_key!r}, got {list(state.shape)}"
        )
    return state[:, -1, :]  # last observed step is the reference frame


# ------------------------------------------------------------------------------------------ prefixes
def encode_prefix(prefix: object, spec: EmbodimentSpec, raw_state: Mapping[str, np.ndarray], batch: int,
                  flat: bool = False) -> np.ndarray:
    """Physical actions of an earlier chunk to continue, ``{key: [B, n, width]}`` exactly as ``get_action``
    returns them (``"action.<key>"`` keys for a flat observation), -> normalised float32 [B, n, Da] for
    rows 0 … n−1 of the new chunk: the exact inverse of decoding with the *current* observation's state and
    those rows' statistics (per-row statistics: encode the rows where they will be decoded). Min/max keys
    outside their statistics come back clipped, as decoding clips."""
    return encode_actions(check_prefix(prefix, spec, batch, flat), spec, raw_state)


def check_prefix(prefix: object, spec: EmbodimentSpec, batch: int, flat: bool = False) -> dict[str, np.ndarray]:
    """A prefix's arrays by bare action key after checking keys, shapes [B, n, width] (one n, at most the
    horizon) and values, with one-line errors."""
    if not isinstance(prefix, Mapping):
        raise ObservationError(f"prefix must be a dict {{action key: [B, n, width]}}, got {type(prefix).__name__}")
    names = {(f"action.{key}" if flat else key): key for key in spec.action_keys}
    unknown = sorted(str(k) for k in prefix if k not in names)
    missing = sorted(k for k in names if k not in prefix)
    if unknown or missing:
        raise ObservationError(f"prefix keys {sorted(map(str, prefix))} — expected exactly {sorted(names)} "
                               f"(missing {missing}, unknown {unknown})")
    first, actions = None, {}
    for name, key in names.items():
        value = prefix[name]
        width = spec.action_dims[key]
        if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
            raise ObservationError(f"prefix[{name!r}] must be a float array [B, n, {width}], got {type(value).__name__}"
                                   f"{'' if not isinstance(value, np.ndarray) else f' {value.dtype}'}")
        if value.ndim != 3 or value.shape[0] != batch or value.shape[2] != width:
            raise ObservationError(f"prefix[{name!r}] has shape {list(value.shape)} — expected [{batch}, n, {width}]")
        n = value.shape[1]
        if first is not None and n != prefix[first].shape[1]:
            raise ObservationError(f"prefix[{name!r}] has {n} rows but prefix[{first!r}] has "
                                   f"{prefix[first].shape[1]} — every key needs the same rows")
        if not 1 <= n <= spec.action_horizon:
            raise ObservationError(f"prefix[{name!r}] has {n} rows — expected 1..{spec.action_horizon} (the "
                                   f"action horizon of {spec.tag!r})")
        if not np.isfinite(value).all():
            raise ObservationError(f"prefix[{name!r}] contains NaN or inf — expected finite physical actions")
        first = first or name
        actions[key] = value
    return actions
