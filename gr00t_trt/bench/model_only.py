"""``bench --model-only``: the roofline of a checkpoint (headers + config) or of an export (manifest +
ONNX initializer sizes, read without onnx), without executing or loading a single weight."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..base.errors import Gr00tTrtError, ManifestError
from ..contract.export_sizes import stored_weight_bytes
from ..contract.quant_plans import FP8_DEFAULTS, device_defaults
from .devices import require_device
from .roofline import GRAPH_KINDS, PRECISIONS, Roofline, Workload, check_stored_params


def precisions_for(precision: str | None, device: str | None = None) -> dict[str, str]:
    """One precision for every graph; when None, the plan an export for ``device`` would have (Orin: int8,
    never fp8), or the §5 defaults without a device."""
    if precision is None:
        return device_defaults(require_device(device).tflops) if device else dict(FP8_DEFAULTS)
    if precision not in PRECISIONS:
        raise Gr00tTrtError(f"--precision {precision!r} — expected one of: {', '.join(PRECISIONS)}")
    return dict.fromkeys(GRAPH_KINDS, precision)


def roofline_from_checkpoint(checkpoint: str | Path, *, precision: str | None = None,
                             image_sizes: Iterable[tuple[int, int]] | None = None, cameras: int = 1,
                             batch: int = 1, bucket: int = 32, device: str | None = None) -> Roofline:
    """Roofline of a checkpoint folder or Hub id from its config and safetensors headers only; the
    header counts must equal what the config implies (``check_stored_params``); the model is the
    checkpoint family's (``ModelFamily.roofline``), and so are the image sizes unless given."""
    from ..families.registry import family_of_checkpoint
    from ..model.inspect import inspect_checkpoint  # header reading; its module imports torch

    report = inspect_checkpoint(checkpoint)
    model = family_of_checkpoint(report.folder).roofline()
    counted = {c.name: c.params for c in report.components if c.parent is None}
    check_stored_params(model.stored_params(report.config), counted, str(checkpoint))
    sizes = () if image_sizes is None else (image_sizes,)
    workload = model.default_workload(report.config, *sizes, cameras=cameras, batch=batch, bucket=bucket)
    roof = Roofline.build(report.config, workload, precisions_for(precision, device), model)
    roof.notes.append(f"counts from {checkpoint}: config.json, checked against {report.num_tensors} safetensors headers")
    return roof


def roofline_from_export(folder: str | Path, *, precision: str | None = None, cameras: int | None = None,
                         batch: int = 1, bucket: int = 32, workload: Workload | None = None) -> Roofline:
    """Roofline of an export directory from its manifest (config values, precision per graph, image
    sizes, steps); the stored bytes of every graph's ONNX initializers go into the notes' cross-check."""
    from ..contract.manifest import load_manifest

    manifest = load_manifest(folder, verify_files=False)
    model = manifest.model_family.roofline()
    config = model.config_from_manifest(manifest.model, f"{folder}/manifest.json model")
    if precision is None:
        precisions = {}
        for kind in GRAPH_KINDS:
            graphs = manifest.graphs_of_kind(kind)
            if not graphs:
                raise ManifestError(f"{folder}: the export has no {kind!r} graph — re-export")
            precisions[kind] = graphs[0].precision
    else:
        precisions = precisions_for(precision)
    if workload is None:
        sizes = list(manifest.image_sizes)
        workload = model.default_workload(config, sizes, cameras=len(sizes) if cameras is None else cameras,
                                          batch=batch, steps=manifest.steps, bucket=bucket)
    roof = Roofline.build(config, workload, precisions, model)
    stored = stored_weight_bytes(folder, manifest.graphs)
    roof.notes.append("stored weight bytes per graph (ONNX initializers; tables hold every step and kept "
                      "embodiment, of which one row is read): "
                      + ", ".join(f"{name} {size / 1e6:.1f} MB" for name, size in stored.items()))
    return roof
