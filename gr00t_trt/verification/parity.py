"""Numerical comparison of a candidate against the reference (architecture §7). numpy only.

One ``StageComparison`` per compared tensor: cosine similarity, mean and max absolute error, relative L2,
and the threshold that applies to it at the candidate's precision. ``ParityReport`` collects them for
``verify``, export-time validation and tests.

Backbone features are compared through their family's *feature view* (``compare_features``): the bounds of
§7 were written for features at unit scale (N1.6's are the output of an RMSNorm), so a family whose features
are read before the final norm (N1.7, RMS ≈ 3) has them compared as the action head's first op, VLLN (a
LayerNorm), standardises them before any learned weight sees them. The raw metrics ride along as information.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass(frozen=True)
class Threshold:
    """Pass criteria; a ``None`` bound is not checked."""

    max_rel_l2: float | None = None
    min_cosine: float | None = None
    max_mean_abs: float | None = None

    def describe(self) -> str:
        parts = []
        if self.max_rel_l2 is not None:
            parts.append(f"rel L2 ≤ {self.max_rel_l2:g}")
        if self.min_cosine is not None:
            parts.append(f"cosine ≥ {self.min_cosine:g}")
        if self.max_mean_abs is not None:
            parts.append(f"mean abs ≤ {self.max_mean_abs:g}")
        return ", ".join(parts)


#: Every pass criterion of the project, per check and precision (bf16 shares fp16's row; int8 W8A8 is held
#: to the fp8 row, the bounds of the issue that brought it — both are 8-bit GEMM inputs with fp16 elsewhere):
#: ``backbone`` / ``normalised_action`` / ``physical_action`` are architecture §7's end-to-end checks;
#: ``graph`` is the check of each graph alone (right after export, and in the CPU preflight) against its
#: fp32 torch wrapper: §7's backbone cosine at the graph's precision (mean-abs bounds are absolute, so they
#: apply end to end only); ``mask`` is the exact agreement of the additive attention masks.
#: The ``backbone`` row applies at the scale it was written for, unit scale: features are compared through
#: their family's feature view (``FEATURE_VIEWS``, ``compare_features``), the numbers here never change.
THRESHOLDS: dict[str, dict[str, Threshold]] = {
    "graph": {
        "fp32": Threshold(max_rel_l2=1e-4),
        "fp16": Threshold(min_cosine=0.999),
        "fp8": Threshold(min_cosine=0.99),
        "int8": Threshold(min_cosine=0.99),
    },
    "mask": {p: Threshold(max_rel_l2=0.0) for p in ("fp32", "fp16", "fp8", "int8")},
    "backbone": {
        "fp32": Threshold(max_rel_l2=1e-4),
        "fp16": Threshold(min_cosine=0.999, max_mean_abs=0.01),
        "fp8": Threshold(min_cosine=0.99, max_mean_abs=0.05),
        "int8": Threshold(min_cosine=0.99, max_mean_abs=0.05),
    },
    "normalised_action": {
        "fp32": Threshold(max_rel_l2=1e-4),
        "fp16": Threshold(min_cosine=0.99, max_mean_abs=0.05),
        "fp8": Threshold(min_cosine=0.98, max_mean_abs=0.1),
        "int8": Threshold(min_cosine=0.98, max_mean_abs=0.1),
    },
    "physical_action": {
        "fp32": Threshold(max_rel_l2=1e-4),
        "fp16": Threshold(min_cosine=0.99),
        "fp8": Threshold(min_cosine=0.98),
        "int8": Threshold(min_cosine=0.98),
    },
}


def threshold_for(check: str, precision: str) -> Threshold:
    """The threshold of ``check`` (graph / backbone / normalised_action / physical_action) at ``precision``."""
    row = THRESHOLDS[check]
    key = "fp16" if precision == "bf16" else precision
    if key not in row:
        raise KeyError(f"no {check} threshold at precision {precision!r} — declared: {', '.join(row)}")
    return row[key]


def standardise(x: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """Per-token standardisation over the hidden (last) axis: LayerNorm without its affine, float64."""
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(x.var(axis=-1, keepdims=True) + eps)


@dataclass(frozen=True)
class FeatureView:
    """How a family's backbone features are compared: ``transform`` of both sides, named in the stage."""

    label: str  # appended to the stage name; "" for the identity
    transform: Callable[[np.ndarray], np.ndarray] | None = None


#: A family declares one by name (``ModelFamily.feature_view``). ``identity``: features already at unit scale
#: (an RMSNorm output, N1.6). ``standardised``: pre-norm features, seen as VLLN sees them before its affine —
#: a per-token scale or shift error is invisible to the consumer and to this view, a per-channel one is not.
FEATURE_VIEWS: dict[str, FeatureView] = {
    "identity": FeatureView(""),
    "standardised": FeatureView(" (standardised as VLLN sees them)", standardise),
}


def feature_view(name: str) -> FeatureView:
    """The view a family names, or a one-line error listing the known ones."""
    if name not in FEATURE_VIEWS:
        raise KeyError(f"unknown feature view {name!r} — known: {', '.join(FEATURE_VIEWS)}")
    return FEATURE_VIEWS[name]


@dataclass(frozen=True)
class StageComparison:
    stage: str
    cosine: float
    mean_abs: float
    max_abs: float
    rel_l2: float
    threshold: Threshold
    passed: bool
    shape: tuple[int, ...]
    raw: dict | None = None  # metrics before a feature view (information, not a pass criterion)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["threshold"] = self.threshold.describe()
        return data


def compare(stage: str, reference: np.ndarray, candidate: np.ndarray, threshold: Threshold) -> StageComparison:
    """Compare two arrays of the same shape in float64; NaN anywhere fails the check."""
    ref = np.asarray(reference, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    if ref.shape != cand.shape:
        raise ValueError(f"{stage}: reference shape {ref.shape} != candidate shape {cand.shape}")
    diff = cand - ref
    ref_norm = float(np.linalg.norm(ref))
    cand_norm = float(np.linalg.norm(cand))
    rel_l2 = float(np.linalg.norm(diff)) / max(ref_norm, 1e-30)
    if ref_norm == 0.0 and cand_norm == 0.0:
        cosine = 1.0
    else:
        cosine = float(np.dot(ref.ravel(), cand.ravel()) / max(ref_norm * cand_norm, 1e-30))
    mean_abs = float(np.mean(np.abs(diff))) if diff.size else 0.0
    max_abs = float(np.max(np.abs(diff))) if diff.size else 0.0
    finite = bool(np.isfinite(ref).all() and np.isfinite(cand).all())
    passed = finite and all(
        [
            threshold.max_rel_l2 is None or rel_l2 <= threshold.max_rel_l2,
            threshold.min_cosine is None or cosine >= threshold.min_cosine,
            threshold.max_mean_abs is None or mean_abs <= threshold.max_mean_abs,
        ]
    )
    return StageComparison(stage, cosine, mean_abs, max_abs, rel_l2, threshold, passed, tuple(ref.shape))


def compare_features(stage: str, reference: np.ndarray, candidate: np.ndarray, threshold: Threshold,
                     view: str = "identity") -> StageComparison:
    """``compare`` of backbone features through ``view`` (module docstring); the stage name says which view,
    and a non-identity view records the raw cosine and mean abs in ``raw``."""
    chosen = feature_view(view)
    if chosen.transform is None:
        return compare(stage, reference, candidate, threshold)
    raw = compare(stage, reference, candidate, threshold)
    seen = compare(stage + chosen.label, chosen.transform(reference), chosen.transform(candidate), threshold)
    info = {"cosine": raw.cosine, "mean_abs": raw.mean_abs, "max_abs": raw.max_abs, "rel_l2": raw.rel_l2}
    return dataclasses.replace(seen, raw=info)


@dataclass
class ParityReport:
    """All comparisons of one verification run."""

    comparisons: list[StageComparison] = field(default_factory=list)
    context: dict = field(default_factory=dict)

    def add(self, comparison: StageComparison) -> StageComparison:
        self.comparisons.append(comparison)
        return comparison

    @property
    def passed(self) -> bool:
        return bool(self.comparisons) and all(c.passed for c in self.comparisons)

    @property
    def failures(self) -> list[StageComparison]:
        return [c for c in self.comparisons if not c.passed]

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "context": self.context,
            "comparisons": [c.to_dict() for c in self.comparisons],
        }
