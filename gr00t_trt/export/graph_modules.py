"""Every exported graph's torch wrapper, built once from a loaded model: what the exporter exports, what
fp8 calibration runs in fp32, and what the CPU preflight runs as the reference."""

from __future__ import annotations

import torch

from ..graphs import graph_name


def graph_modules(model, config, image_sizes, slots) -> dict[str, tuple[str, torch.nn.Module, dict[str, int]]]:
    """graph name → (kind, wrapper module, the graph's own dim sizes) for every graph of a full model."""
    from .action_head_graphs import action_head_graph_modules
    from .backbone import BackboneGraph
    from .vision import VisionGraph

    modules: dict[str, tuple[str, torch.nn.Module, dict[str, int]]] = {}
    for h, w in image_sizes:
        vision = VisionGraph(model.backbone, h, w)
        tokens = (h * w) // config.patch_tokens_per_image_pixel
        dims = {"h": h, "w": w, "t": tokens}
        modules[graph_name("vision", dims)] = ("vision", vision, dims)
    modules["backbone"] = ("backbone", BackboneGraph(model.backbone), {})
    for kind, module in action_head_graph_modules(model.action_head, slots).items():
        modules[kind] = (kind, module, {})
    return modules
