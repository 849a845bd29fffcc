"""Export the action head alone (dit_context … action_decoder) from an in-memory ``Gr00tActionHead``.

For benchmarks and research on the part of N1.6 that runs N times per control step: no checkpoint on
disk, no backbone in memory (the full-size head is 1.4 G parameters; the whole model in fp32 needs
~13 GB). The result is a normal export directory — graphs, manifest with sha256 — that the runtime's
``Pipeline`` runs from given backbone features (``run(..., start="dit_context")``). Its manifest has no
vision or backbone graph, so it cannot run a control step from images.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from ..errors import ExportError
from ..manifest import EmbodimentEntry, Manifest, sha256_file, write_manifest
from .driver import Progress, _static_dims, _versions, export_graphs


def export_action_head(head, config, out_dir: str | Path, *, embodiment_slots: list[int], precision: str = "fp32",
                       max_batch: int = 1, max_seq_len: int = 512, progress: Progress | None = None) -> Manifest:
    """Write the five action-head graphs of ``head`` (sliced to ``embodiment_slots``) into ``out_dir``."""
    from ..graphs import dynamic_ranges
    from .action_head_graphs import action_head_graph_modules

    out_dir = Path(out_dir)
    if out_dir.exists():
        raise ExportError(f"{out_dir} already exists — choose a new folder for the action-head export")
    progress = progress or (lambda name, status: None)
    modules = {kind: (kind, module, {}) for kind, module in action_head_graph_modules(head, embodiment_slots).items()}
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.partial-"))
    try:
        graphs = export_graphs(modules, config, (), embodiment_slots, precision, work, progress)
        tokens_per_image = [1]  # no images reach this export: T is unused
        manifest = Manifest(
            source={"checkpoint": "in-memory action head", "fingerprint": ""},
            model=config.to_dict(),
            dims=_static_dims(config),
            dynamic_dims=dynamic_ranges(max_batch=max_batch, max_seq_len=max_seq_len, tokens_per_image=tokens_per_image),
            steps=config.num_inference_timesteps,
            image_sizes=(),
            embodiments={f"id{eid}": EmbodimentEntry(tag=f"id{eid}", id=eid, slot=slot)
                         for slot, eid in enumerate(embodiment_slots)},
            graphs=graphs,
            files={p.name: sha256_file(p) for p in sorted(work.iterdir()) if p.is_file()},
            # the image-token ids of the model; no token ids reach an action-head export (pad unused)
            tokens={"image_token_index": config.backbone.image_token_index,
                    "image_start_token_id": config.backbone.image_start_token_id,
                    "image_end_token_id": config.backbone.image_end_token_id, "pad_token_id": 0},
            pixels_per_token=config.patch_tokens_per_image_pixel,
            exporter=_versions(),
        )
        write_manifest(work, manifest)
        work.rename(out_dir)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return manifest
