"""Export the action head alone (dit_context … action_decoder) from an in-memory ``Gr00tActionHead``.

For benchmarks and research on the part of the model that runs N times per control step: no checkpoint on
disk, no backbone in memory (the full-size head is 1.4 G parameters; the whole model in fp32 needs
~13 GB). The result is a normal export directory — graphs, manifest with sha256 — that the runtime's
``Pipeline`` runs from given backbone features (``run(..., start="dit_context")``). Its manifest has no
vision or backbone graph, so it cannot run a control step from images.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from ..base.artifacts import StagingFolder, check_replaceable
from ..base.errors import ExportError
from ..contract.manifest import EmbodimentEntry, Manifest
from ..families.family import ModelFamily
from ..families.registry import DEFAULT_FAMILY
from .driver import Progress, export_graphs, is_export, write_export_manifest


def export_action_head(head, config, out_dir: str | Path, *, embodiment_slots: list[int], precision: str = "fp32",
                       max_batch: int = 1, max_seq_len: int = 512, force: bool = False,
                       progress: Progress | None = None, family: ModelFamily = DEFAULT_FAMILY) -> Manifest:
    """Write the five action-head graphs of ``head`` (sliced to ``embodiment_slots``) into ``out_dir``;
    ``family``: the model family whose contract, static dims and example step the export follows."""
    from .action_head_graphs import action_head_graph_modules

    face = family.export()

    out_dir = Path(out_dir)
    check_replaceable(out_dir, force, is_export, "gr00t-trt export", ExportError)
    progress = progress or (lambda name, status: None)
    from .precision import ExportPrecision, plan_precision

    def build(kinds: list[str]) -> dict:  # one dataflow piece's wrappers at a time
        return {kind: (kind, module, {})
                for kind, module in action_head_graph_modules(head, embodiment_slots, kinds=kinds).items()}

    plan = ExportPrecision(plan_precision(precision, "", None), config, contract=family.runtime().CONTRACT,
                           static=face.static_dims(config))
    if plan.plan.quantised:  # fp8 and int8 graphs need calibration observations
        raise ExportError("an action-head export has no calibration observations — choose fp32, fp16 or bf16")
    staging = StagingFolder(out_dir, progress)
    try:
        graphs = export_graphs(build, config, (), embodiment_slots, plan, staging.path, progress,
                               example=face.example_step(config, embodiment_slots, start="dit_context"), start="dit_context")
        manifest = write_export_manifest(
            staging.path, config, graphs, family=family, tokenizer=SimpleNamespace(pad_token_id=0),
            source={"checkpoint": "in-memory action head", "fingerprint": ""},
            embodiments={f"id{eid}": EmbodimentEntry(tag=f"id{eid}", id=eid, slot=slot)
                         for slot, eid in enumerate(embodiment_slots)},
            image_sizes=(),  # no token ids reach an action-head export (pad token 0)
            max_batch=max_batch, max_seq_len=max_seq_len, precision=plan.manifest_section(),
        )
        staging.publish(force, is_export, "gr00t-trt export", ExportError)
    except BaseException:
        staging.discard()
        raise
    return manifest
