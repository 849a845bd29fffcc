"""Every N1.6 graph's torch wrapper, built from a loaded model: what the exporter exports, what fp8
calibration runs in fp32, and what the CPU preflight runs as the reference."""

from __future__ import annotations

import torch

from ....contract.graphs import graph_name
from ....export import graph_modules as shared

#: model state-dict prefixes the wrapper of each graph kind reads (dit_context: also the K/V projections
#: of the cross-attention blocks, which dit leaves out; the action head's are every family's)
GRAPH_WEIGHTS: dict[str, tuple[str, ...]] = {
    "vision": ("backbone.model.vision_model.", "backbone.model.mlp1."),
    "backbone": ("backbone.model.language_model.",),
    "dit_context": ("action_head.vlln.",),
    **shared.ACTION_HEAD_WEIGHTS,
}


def static_dims(config) -> dict[str, int]:
    """The export's static dim sizes (``graphs.DIMS``), shared by every graph."""
    return {
        **shared.action_head_dims(config),
        "R": config.backbone.vision.patch_size * config.backbone.unshuffle_factor,
        "U": config.backbone.unshuffle_factor,
        "Dv": config.backbone.vision.hidden_size,
    }


def graph_modules(model, config, slots, kinds=None) -> dict[str, tuple[str, torch.nn.Module, dict[str, int]]]:
    """graph name → (kind, wrapper module, the graph's own dim sizes) for every graph of a full model, or
    only those of ``kinds``, in dataflow order."""
    from ....export.action_head_graphs import action_head_graph_modules
    from .backbone import BackboneGraph
    from .vision import VisionGraph

    wanted = set(kinds) if kinds is not None else None
    modules: dict[str, tuple[str, torch.nn.Module, dict[str, int]]] = {}
    if wanted is None or "vision" in wanted:  # one graph for every image size
        modules[graph_name("vision")] = ("vision", VisionGraph(model.backbone), {})
    if wanted is None or "backbone" in wanted:
        modules["backbone"] = ("backbone", BackboneGraph(model.backbone), {})
    for kind, module in action_head_graph_modules(model.action_head, slots, kinds=kinds).items():
        modules[kind] = (kind, module, {})
    return modules


def graph_weights(kind: str, config, keys) -> list[str]:
    """Those of the checkpoint ``keys`` that the wrapper of graph ``kind`` reads."""
    return shared.graph_weights(kind, config, keys, GRAPH_WEIGHTS)


def segment_modules(lazy, config, kinds, slots) -> dict[str, tuple[str, torch.nn.Module, dict[str, int]]]:
    """``graph_modules`` of one dataflow segment, with just their weights read from the checkpoint."""
    return shared.segment_modules(lazy, config, kinds, slots, build=graph_modules, table=GRAPH_WEIGHTS)
