"""Every N1.7 graph's torch wrapper, built from a loaded (or lazily loaded) ``Gr00tN1d7``, with the same
contract as N1.6's (``families.n16.export.graph_modules``): the same functions over N1.7's checkpoint layout.

The action-head graphs are N1.6's wrappers on ``N17ActionHead`` (same key names, N1.7's widths), except
``dit_context``, which adds the VL self-attention.
"""

from __future__ import annotations

import torch

from ....contract.graphs import graph_name
from ....export import graph_modules as shared
from ..contract import GRAPH_SPECS
from ..layout import LLM, VISION, VL_SELF_ATTENTION

#: checkpoint key prefixes each graph kind's wrapper reads (N1.7 layout, spec §2.2); dit_context also
#: reads the cross blocks' to_k/to_v (``export.graph_modules.graph_weights``). Read by no graph:
#: ``backbone.model.lm_head.weight`` (skipped by the loader) and the LLM's final ``norm`` (the features
#: are read before it, spec §3.6).
GRAPH_WEIGHTS: dict[str, tuple[str, ...]] = {
    "vision": (VISION + "patch_embed.", VISION + "pos_embed.", VISION + "blocks.", VISION + "merger.",
               VISION + "deepstack_merger_list."),
    "backbone": (LLM + "embed_tokens.", LLM + "layers."),
    "dit_context": ("action_head.vlln.", VL_SELF_ATTENTION),
    **shared.ACTION_HEAD_WEIGHTS,
}
assert set(GRAPH_WEIGHTS) == set(GRAPH_SPECS), "every N1.7 graph kind needs its weights"


def static_dims(config) -> dict[str, int]:
    """The export's static dim sizes (``contract.DIMS``), shared by every graph."""
    v = config.backbone.vision
    return {
        **shared.action_head_dims(config),
        "R": v.patch_size * v.spatial_merge_size,
        "U": v.spatial_merge_size,
        "Dv": v.hidden_size,
        "Dr": v.head_dim,
    }


def graph_modules(model, config, slots, kinds=None) -> dict[str, tuple[str, torch.nn.Module, dict[str, int]]]:
    """graph name → (kind, wrapper module, the graph's own dim sizes) for every graph of a full model, or
    only those of ``kinds``, in dataflow order."""
    from ....export.action_head_graphs import action_head_graph_modules
    from .backbone import N17BackboneGraph
    from .dit_context import N17DitContextGraph
    from .vision import N17VisionGraph

    wanted = set(GRAPH_SPECS) if kinds is None else set(kinds)
    builders = {
        "vision": lambda: N17VisionGraph(model.backbone.model.model.visual, config),  # every image size
        "backbone": lambda: N17BackboneGraph(model.backbone.model.model.language_model, config),
        "dit_context": lambda: N17DitContextGraph(model.action_head),
    }
    common = [k for k in GRAPH_SPECS if k in wanted and k not in builders]  # the shared action-head wrappers
    others = action_head_graph_modules(model.action_head, slots, kinds=common) if common else {}
    modules: dict[str, tuple[str, torch.nn.Module, dict[str, int]]] = {}
    for kind in GRAPH_SPECS:
        if kind in wanted:
            module = builders[kind]() if kind in builders else others[kind]
            modules[graph_name(kind)] = (kind, module.eval(), {})
    return modules


def graph_weights(kind: str, config, keys) -> list[str]:
    """Those of the model's checkpoint ``keys`` that the wrapper of graph ``kind`` reads."""
    return shared.graph_weights(kind, config, keys, GRAPH_WEIGHTS)


def segment_modules(lazy, config, kinds, slots) -> dict[str, tuple[str, torch.nn.Module, dict[str, int]]]:
    """The wrappers of ``kinds`` with just their weights read from the checkpoint of ``lazy`` (an N1.7
    ``LazyModel``, ``families.n17.model.open_model``); the model is back on meta on return."""
    return shared.segment_modules(lazy, config, kinds, slots, build=graph_modules, table=GRAPH_WEIGHTS)
