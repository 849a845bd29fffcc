"""Robot state -> the model's normalised, zero-padded state vector (spec §5.3), and back.

Per state key, in the embodiment's key order: sin/cos encoding (all sines, then all cosines; width
doubles) for listed keys; else mean/std (std 0 passes through); else min/max to [-1, 1] (features with
max ≈ min give 0), clipped when the processor clips outliers. Intermediate dtypes follow the
reference so that results match it bit for bit; the result is float32.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..base.errors import ObservationError
from .modality import EmbodimentSpec, NormParams


def _promote(values) -> np.ndarray:
    """Floats keep their dtype (N1.6 stores results in the input's dtype); integers become float64."""
    values = np.asarray(values)
    return values if np.issubdtype(values.dtype, np.floating) else values.astype(np.float64)


def normalize_minmax(values: np.ndarray, params: NormParams) -> np.ndarray:
    """x -> 2·(x − min)/(max − min) − 1, 0 where max ≈ min.

    Rounded like N1.6: the ratio is computed in float64 and stored in the input dtype, then 2·r − 1
    is taken in that dtype.
    """
    values = _promote(values)
    lo, hi = np.broadcast_arrays(params.min, params.max)
    live = ~np.isclose(hi, lo)
    ratio = ((values - lo) / np.where(live, hi - lo, 1.0)).astype(values.dtype)
    return np.where(live, 2 * ratio - 1, 0).astype(values.dtype)


def unnormalize_minmax(values: np.ndarray, params: NormParams) -> np.ndarray:
    """[-1, 1] -> [min, max] (float64); inputs are clipped to [-1, 1] first, as N1.6 decodes."""
    values = np.clip(_promote(values), -1.0, 1.0)
    return (values + 1.0) / 2.0 * (params.max - params.min) + params.min


def normalize_meanstd(values: np.ndarray, params: NormParams) -> np.ndarray:
    """(x − mean)/std in the input dtype; features with std 0 pass through unchanged."""
    values = _promote(values)
    live = params.std != 0
    return np.where(live, (values - params.mean) / np.where(live, params.std, 1.0), values).astype(values.dtype)


def unnormalize_meanstd(values: np.ndarray, params: NormParams) -> np.ndarray:
    """x·std + mean in the input dtype (float32 model output stays float32, as in N1.6); std 0 passes."""
    values = _promote(values)
    return np.where(params.std != 0, values * params.std + params.mean, values).astype(values.dtype)


def sincos_encode(values: np.ndarray) -> np.ndarray:
    """[..., d] -> [..., 2d]: sin of every feature, then cos of every feature."""
    return np.concatenate([np.sin(values), np.cos(values)], axis=-1)


def normalize_state(state: Mapping[str, np.ndarray], spec: EmbodimentSpec) -> np.ndarray:
    """Raw state {key: [B, T, D_k]} -> float32 [B, T, max_state_dim] (T is 1 for every N1.6 config).

    Keys are read in the embodiment's order; widths are checked against the statistics.
    """
    parts = []
    for key in spec.state_keys:
        if key not in state:
            raise ObservationError(f"state key {key!r} is missing for embodiment {spec.tag!r}")
        values = np.asarray(state[key])
        params = spec.state_norm[key]
        if values.ndim < 1 or values.shape[-1] != params.dim:
            raise ObservationError(
                f"state key {key!r} has width {values.shape[-1] if values.ndim else 0}, "
                f"expected {params.dim} (from statistics.json)"
            )
        if key in spec.sin_cos_keys:
            part = sincos_encode(values)
        elif key in spec.state_mean_std_keys:
            part = normalize_meanstd(values, params)
        else:
            part = normalize_minmax(values, params)
            if spec.clip_outliers:
                part = np.clip(part, -1.0, 1.0)
        parts.append(part.astype(np.float32))
    joined = np.concatenate(parts, axis=-1)  # [B, T, state_width]
    out = np.zeros(joined.shape[:-1] + (spec.max_state_dim,), dtype=np.float32)
    out[..., : joined.shape[-1]] = joined  # zero-pad to [B, T, max_state_dim]
    return out


def unnormalize_state(normalized: np.ndarray, spec: EmbodimentSpec) -> dict[str, np.ndarray]:
    """Inverse of ``normalize_state`` for min/max and mean/std keys (sin/cos keys are recovered with
    atan2). Clipped values cannot be recovered: use it on in-range states (round-trip tests)."""
    normalized = np.asarray(normalized, dtype=np.float64)
    out: dict[str, np.ndarray] = {}
    offset = 0
    for key in spec.state_keys:
        params = spec.state_norm[key]
        if key in spec.sin_cos_keys:
            sin = normalized[..., offset : offset + params.dim]
            cos = normalized[..., offset + params.dim : offset + 2 * params.dim]
            out[key] = np.arctan2(sin, cos).astype(np.float32)
            offset += 2 * params.dim
            continue
        part = normalized[..., offset : offset + params.dim]
        if key in spec.state_mean_std_keys:
            out[key] = unnormalize_meanstd(part, params).astype(np.float32)
        else:
            out[key] = unnormalize_minmax(part, params).astype(np.float32)
        offset += params.dim
    return out
