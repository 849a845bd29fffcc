"""One exported graph checked against its fp32 torch wrapper on the same inputs: the per-graph check of
the export (right after writing each graph) and of the CPU preflight. numpy + ONNX Runtime only."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..contract.graphs import GraphSpec
from ..verification.parity import StageComparison, Threshold, compare, threshold_for

#: graph outputs compared as masks (additive biases: 0 where attended, ≤ −1e4 where masked; the masked
#: value legitimately differs between fp32 (−1.7e38) and fp16 (−32752) producers)
BIAS_OUTPUTS = ("text_bias", "image_bias")
MASKED_BELOW = -1e4


def graph_threshold(kind: str, precision: str) -> Threshold:
    """Per-graph check (``parity.THRESHOLDS["graph"]``): fp32 rel L2 ≤ 1e-4; otherwise §7's backbone
    cosine at the graph's precision. Mean-abs bounds apply end to end only: graph outputs (K/V, DiT
    features) have their own scales."""
    return threshold_for("graph", precision)


def compare_outputs(
    label: str, spec: GraphSpec, precision: str, reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]
) -> list[StageComparison]:
    """One comparison per output of a graph call (biases as masks)."""
    result = []
    kind = spec.kind
    for tensor in spec.outputs:
        ref = np.asarray(reference[tensor.name], np.float32)
        cand = np.asarray(candidate[tensor.name], np.float32)
        if tensor.name in BIAS_OUTPUTS:
            check = compare(f"{label}.{tensor.name} (mask)", (ref < MASKED_BELOW).astype(np.float32),
                            (cand < MASKED_BELOW).astype(np.float32), threshold_for("mask", precision))
        else:
            check = compare(f"{label}.{tensor.name}", ref, cand, graph_threshold(kind, precision))
        result.append(check)
    return result


def ort_session(path: Path, precision: str):
    """A CPU session with the runtime's optimisation rules (``runtime.ort_backend``)."""
    import onnxruntime as ort

    from ..runtime.ort_backend import cpu_session, optimization_level

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = optimization_level(ort, precision)
    return cpu_session(path, options)


def run_session(session, spec: GraphSpec, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    results = session.run(spec.output_names, {t.name: feeds[t.name] for t in spec.inputs})
    return {t.name: np.asarray(r) for t, r in zip(spec.outputs, results, strict=True)}
