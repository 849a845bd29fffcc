"""CPU preflight of an export's precisions: every graph checked against the fp32 reference before any
engine is built or any robot moves (architecture §5, §7).

Candidates per graph precision:
- fp32, fp16: the exported ONNX on ONNX Runtime CPU;
- fp8: the exported ONNX (Q/DQ) on ONNX Runtime CPU at graph optimisation level BASIC — higher levels
  fuse FLOAT8 Q/DQ into kernels the CPU provider lacks (tensorrt-notes §0.7);
- bf16: ONNX Runtime CPU has no bf16 kernels for several ops, so the very graph module that was exported
  (``precision_module``) runs in PyTorch bf16 on the CPU.

Reference: the fp32 graph modules chained on the same observations (``calibration.chain_graphs``, along the dataflow).
Levels: each graph alone on the reference's own inputs, then end to end with every graph at its
precision (backbone features — through the family's feature view, ``parity.compare_features`` — normalised
and physical actions), with the thresholds of §7.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..export.graph_check import compare_outputs, ort_session, run_session
from .parity import ParityReport, compare, compare_features, threshold_for

_FEATURE_KINDS = ("vision", "backbone", "dit_context")


def candidate_runner(folder: Path, manifest, model, config, slots):
    """run(name, kind, feeds) of the export at its recorded precisions (module docstring)."""
    from ..export.calibration import torch_runner
    from ..export.precision import precision_module

    contract = manifest.contract
    activation = manifest.precision.get("activation_dtype", _io_dtype(manifest))
    sessions, bf16 = {}, {}
    bf16_names = [name for name, g in manifest.graphs.items() if g.precision == "bf16"]
    if bf16_names:
        fresh = manifest.model_family.export().graph_modules(model, config, slots)
        for name in bf16_names:
            kind, module, dims = fresh[name]
            names = contract.graphs[kind].input_names
            bf16[name] = (kind, precision_module(kind, module, "bf16", activation, names), dims)
    torch_run = torch_runner(bf16, contract)

    def run(name: str, kind: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        entry = manifest.graph(name)
        if entry.precision == "bf16":
            return torch_run(name, kind, feeds)
        if name not in sessions:
            sessions[name] = ort_session(folder / entry.file, entry.precision)
        return run_session(sessions[name], contract.graphs[kind], feeds)

    return run


def _io_dtype(manifest) -> str:
    dtypes = {t.dtype for g in manifest.graphs.values() for t in (*g.inputs, *g.outputs) if t.dtype.startswith("float")}
    return "float16" if dtypes == {"float16"} else "float32"


def preflight_export(
    export_dir: str | Path,
    checkpoint: str | Path,
    *,
    observations: Sequence[tuple[str, dict]] | None = None,
    seed: int = 0,
) -> ParityReport:
    """Check every graph of ``export_dir`` at its precision against the fp32 graph modules of
    ``checkpoint`` on ``observations`` (default: one synthetic observation per exported embodiment)."""

    from ..contract.manifest import load_manifest
    from ..export.calibration import chain_graphs, torch_runner
    from ..export.examples import reference_grids
    from ..export.precision import io_value, least_precise
    from ..processing.observations import synthetic_observation

    folder = Path(export_dir)
    manifest = load_manifest(folder)
    family, contract = manifest.model_family, manifest.contract
    model, config = family.export().load_reference(checkpoint, manifest, export_dir)
    entries = list(manifest.embodiments.values())
    slots = [entries[0].id] if len(entries) == 1 else None
    slot_of = {e.id: e.slot for e in entries}
    preprocessor = family.runtime().make_preprocessor(folder, manifest)
    if observations is None:
        observations = [
            (e.tag, synthetic_observation(preprocessor, e.tag, seed=seed, image_sizes=manifest.image_sizes))
            for e in entries
        ]
    activation = np.dtype(manifest.precision.get("activation_dtype", _io_dtype(manifest))).type
    modules = family.export().graph_modules(model, config, slots)
    reference = torch_runner(modules, contract)
    grids = reference_grids(modules)  # both chains get the reference's per-size tables
    candidate = candidate_runner(folder, manifest, model, config, slots)
    precisions = {name: g.precision for name, g in manifest.graphs.items()}
    report = ParityReport(context={
        "export_dir": str(folder), "checkpoint": str(checkpoint), "kind": "cpu preflight",
        "precisions": precisions, "calibration": manifest.precision.get("calibration"),
    })
    head = least_precise([precisions[k] for k in ("dit_context", "state_encoder", "action_encoder", "dit",
                                                    "action_decoder")])
    # backbone features depend on the vision graphs too: judged at the least precise of them
    features_precision = least_precise([g.precision for g in manifest.graphs.values()
                                         if g.kind in ("vision", "backbone")])
    rng = np.random.default_rng(seed)
    for n, (tag, obs) in enumerate(observations):
        inputs = preprocessor(obs, tag)
        noise = rng.standard_normal((len(inputs.embodiment_id), config.action_horizon, config.max_action_dim))
        noise = noise.astype(np.float32)
        ref = chain_graphs(reference, inputs, contract, steps=manifest.steps, slot_of=slot_of, noise=noise, grids=grids)
        label = f"obs {n} ({tag})"
        # each graph alone on the reference's inputs (first call per graph, and every denoising step)
        for name, calls in ref.inputs.items():
            kind = manifest.graph(name).kind
            for i, feeds in enumerate(calls):
                # fp32 mask biases saturate as the half-precision graphs' own do (a plain cast gives -inf)
                cast = {k: io_value(v, np.dtype(activation).name) for k, v in feeds.items()}
                out = candidate(name, kind, cast)
                where = f"{label} graph {name} [{precisions[name]}]" + (f" call {i}" if len(calls) > 1 else "")
                for check in compare_outputs(where, contract.graphs[kind], precisions[name], ref.outputs[name][i], out):
                    report.add(check)
        # end to end, every graph at its precision
        got = chain_graphs(candidate, inputs, contract, steps=manifest.steps, slot_of=slot_of, noise=noise,
                           activation=activation, grids=grids)
        features = "backbone_features"
        report.add(compare_features(f"{label} end-to-end: backbone features", ref.outputs["backbone"][0][features],
                                    got.outputs["backbone"][0][features].astype(np.float32),
                                    threshold_for("backbone", features_precision), family.feature_view))
        want = ref.outputs["action_decoder"][-1]["next_actions"]
        have = got.outputs["action_decoder"][-1]["next_actions"].astype(np.float32)
        report.add(compare(f"{label} end-to-end: normalised action", want, have,
                           threshold_for("normalised_action", head)))
        want_physical = preprocessor.decode(want, inputs)
        have_physical = preprocessor.decode(have, inputs)
        for key, value in want_physical.items():
            report.add(compare(f"{label} end-to-end: physical {key}", value, have_physical[key],
                               threshold_for("physical_action", head)))
    return report

