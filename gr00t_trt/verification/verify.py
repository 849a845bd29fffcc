"""`gr00t-trt verify`: an export against the unoptimised PyTorch reference (architecture §7).

Both sides get the same observation and the same initial noise. Four levels separate where an error
comes from:
  1. each graph alone on the reference's own inputs (vision, backbone);
  2. the exported action head run on the reference's backbone output;
  3. lock-step denoising: every step starts from the reference's actions of that step, so per-step
     error is seen without compounding;
  4. end to end through the runtime's hot path: backbone features, normalised and physical actions.
Backbone features are compared through the family's feature view (``parity.compare_features``): pre-norm
features as the action head's VLLN sees them, so §7's unit-scale bounds apply at the scale they were written for.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..base.errors import BackendError, Gr00tTrtError, VerificationError
from ..contract.dataflow import CARRIED_INPUT, GRID, STEP_WEIGHT
from ..contract.manifest import load_manifest
from ..runtime.pipeline import HeadInputs
from .parity import ParityReport, compare, compare_features, threshold_for


def verify_export(
    export_dir: str | Path,
    checkpoint: str | Path,
    *,
    backend: str = "auto",
    obs_path: str | Path | None = None,
    embodiments: Sequence[str] = (),
    seeds: int = 1,
    observations: Sequence[tuple[str, dict]] | None = None,
    same_checkpoint: bool = True,
) -> ParityReport:
    """Compare ``export_dir`` run on ``backend`` with the reference model loaded from ``checkpoint``.

    ``observations`` (pairs of embodiment tag and observation) replace the random ones when given.
    ``same_checkpoint`` refuses, before any work, a checkpoint whose fingerprint differs from the one the
    export was made from; pass False to measure how far other weights of the same config are.
    """
    from ..export.driver import fingerprint
    from ..model.checkpoint import resolve_checkpoint
    from ..runtime.policy import Policy

    manifest = load_manifest(export_dir)
    folder = resolve_checkpoint(checkpoint)
    expected = manifest.source.get("fingerprint")
    if same_checkpoint and expected and fingerprint(folder) != expected:
        raise VerificationError(
            f"{checkpoint} is not the checkpoint {export_dir} was made from (its weights' fingerprint differs "
            f"from the one recorded at export) — pass the checkpoint it was exported from "
            f"({manifest.source.get('checkpoint')}), or --any-checkpoint to compare anyway"
        )
    model, config = manifest.model_family.export().load_reference(folder, manifest, export_dir)

    precisions = {name: g.precision for name, g in manifest.graphs.items()}
    context = {"export_dir": str(export_dir), "checkpoint": str(checkpoint), "steps": manifest.steps,
               "precisions": precisions, "calibration": manifest.precision.get("calibration")}
    try:
        policy = Policy.load(export_dir, backend=backend, verify_files=False)
    except BackendError as exc:
        if "bf16" not in precisions.values():
            raise
        # ONNX Runtime CPU cannot run bf16 graphs: the CPU preflight (PyTorch bf16) is the check here
        report = _preflight(export_dir, folder)
        report.context.update(context, backend=None, note=f"no backend can run this export here ({exc}); "
                              "each graph was checked at its precision by the CPU preflight")
        return report
    report = ParityReport(context={**context, "backend": policy.pipeline.backend.name})
    with policy:
        for label, tag, obs, seed in _cases(policy, manifest, obs_path, embodiments, seeds, observations):
            _verify_case(report, label, model, policy, tag, obs, seed)
    if set(precisions.values()) - {"fp32"}:  # half-precision and fp8 graphs: also each at its precision on the CPU
        for check in _preflight(export_dir, folder).comparisons:
            report.add(dataclasses.replace(check, stage=f"preflight {check.stage}"))
    return report


def _preflight(export_dir, checkpoint) -> ParityReport:
    from .preflight import preflight_export

    return preflight_export(export_dir, checkpoint)


def _cases(policy, manifest, obs_path, embodiments, seeds, observations):
    from ..processing.observations import load_observation, synthetic_observation

    if observations is not None:
        for i, (tag, obs) in enumerate(observations):
            yield f"{tag}/obs{i}", policy.resolve_embodiment(tag), obs, i
        return
    tags = list(embodiments) or sorted(manifest.embodiments)
    if obs_path is not None:
        obs = load_observation(obs_path)
        for tag in tags:
            for seed in range(seeds):
                yield f"{tag}/file/seed{seed}", policy.resolve_embodiment(tag), obs, seed
        return
    sizes = list(manifest.image_sizes)
    for tag in tags:
        policy.resolve_embodiment(tag)
        for seed in range(seeds):
            # rotate which named image size each camera gets, so every one of them is exercised
            rotated = sizes[seed % len(sizes) :] + sizes[: seed % len(sizes)]
            obs = synthetic_observation(policy.preprocessor, tag, seed=seed, image_sizes=rotated)
            yield f"{tag}/seed{seed}", tag, obs, seed


def _precision(manifest, name: str) -> str:
    return manifest.graph(name).precision


def _verify_case(report: ParityReport, label: str, model, policy, tag: str, obs: dict, seed: int) -> None:
    manifest, pipeline = policy.manifest, policy.pipeline
    contract = pipeline.contract
    run = pipeline.graph_runner()  # one graph at a time, reference values cast to each graph's dtypes
    inputs = policy.preprocessor(obs, tag)
    batch = inputs.input_ids.shape[0]
    noise = np.random.default_rng(seed).standard_normal((batch, manifest.dims["H"], manifest.dims["Da"]), dtype=np.float32)

    # ---- reference, unoptimised
    ref = manifest.model_family.export().reference_case(model, inputs, noise)
    ref_physical = _decode(policy, ref.action_pred, inputs, "reference")

    # ---- level 1: each backbone-side graph alone on the reference's inputs (unpadded, as the reference ran)
    host = pipeline.host_values(inputs, noise, padded=False)
    entry = pipeline.entry("vision")
    grid_inputs = [name for name, source in contract.stages["vision"].feeds.items() if source == GRID]
    row = 0
    for image in inputs.images:
        h, w = image.shape[:2]
        feeds = {"images": image[None], **{name: pipeline.grid_feed(name, h, w) for name in grid_inputs}}
        outputs = run("vision", entry.name, feeds)
        rows = 0
        for name, want in ref.image_rows.items():
            got = outputs[name][0]
            rows = got.shape[0]
            report.add(compare(f"{label} {entry.name} {h}x{w} alone: {name}", want[row : row + rows], got,
                               threshold_for("backbone", entry.precision)))
        row += rows
    backbone = pipeline.graphs["backbone"]
    feeds = {name: ref.image_rows[name] if source == "vision" else host[name]
             for name, source in contract.stages["backbone"].feeds.items()}
    (output,) = backbone.outputs
    features = run("backbone", backbone.name, feeds)[output.name]
    valid = inputs.attention_mask
    view = manifest.model_family.feature_view  # the features at the scale §7's bounds were written for
    report.add(compare_features(f"{label} backbone alone: features", ref.backbone_features[valid], features[valid],
                                threshold_for("backbone", backbone.precision), view))

    # ---- levels 2 and 3: the exported action head (the dataflow's sub-chain) on the reference backbone output
    action_threshold = threshold_for("normalised_action", _precision(manifest, "dit"))
    head_values = {name: getattr(inputs, name) for name in contract.external_inputs("dit_context")
                   if name not in ("backbone_features", STEP_WEIGHT)}  # step weights: 1, the plain sampler
    head_inputs = HeadInputs(backbone_features=ref.backbone_features, **head_values)
    head = contract.evaluate(run, pipeline.host_values(head_inputs, noise, start="dit_context", padded=False),
                             steps=manifest.steps, start="dit_context")
    for k in range(manifest.steps):
        lock = contract.denoise_step(run, k, head, ref.steps[k])
        report.add(compare(f"{label} lock-step {k}: next actions", ref.steps[k + 1], lock, action_threshold))
    chained = head[CARRIED_INPUT][-1] if manifest.steps else noise
    report.add(compare(f"{label} action head on reference backbone", ref.action_pred, chained, action_threshold))

    # ---- level 4: end to end through the hot path
    stages = pipeline.run_stages(inputs, noise)
    report.add(compare_features(f"{label} end-to-end: backbone features", ref.backbone_features[valid],
                                np.asarray(stages["backbone_features"], np.float32)[valid],
                                threshold_for("backbone", _precision(manifest, "backbone")), view))
    action_pred = pipeline.run(inputs, noise).copy()
    report.add(compare(f"{label} end-to-end: normalised action", ref.action_pred, action_pred, action_threshold))
    physical = _decode(policy, action_pred, inputs, "exported")
    physical_threshold = threshold_for("physical_action", _precision(manifest, "dit"))
    for key, want in ref_physical.items():
        report.add(compare(f"{label} end-to-end: physical {key}", want, physical[key], physical_threshold))


def _decode(policy, action_pred: np.ndarray, inputs, side: str) -> dict[str, np.ndarray]:
    """Physical actions; a failure to decode the *reference's* actions means the input was degenerate."""
    try:
        return policy.preprocessor.decode(action_pred, inputs)
    except Gr00tTrtError as exc:
        if side == "reference":
            raise VerificationError(
                f"the observation is degenerate: even the PyTorch reference's actions cannot be decoded ({exc}) — "
                "this says nothing about the export; verify with another observation"
            ) from None
        raise
