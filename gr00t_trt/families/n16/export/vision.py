"""``vision`` graph: uint8 images of any size → LLM image embeddings (graphs.VISION).

Same function as ``EagleBackbone.encode_images``, with the image size symbolic: the token grid r x c is
read from the ``position_grid`` input ([r·U, c·U, Dv], the learned table resized to this patch grid, which
the host computes once per size — ``processing.position_grid`` — and the export ships the table for),
so one graph and one TensorRT engine serve every camera size and no Resize op with antialias is exported.
Patchify and pixel-unshuffle are plain reshapes/transposes; every image is its own attention sequence
(batch dim n), so images never attend to each other.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ....base.errors import ExportError
from ....model.checkpoint import parameters_on_meta
from ..backbone import EagleBackbone, resize_position_table


def detached_backbone(backbone: EagleBackbone, dtype: torch.dtype | None = None) -> EagleBackbone:
    """A new EagleBackbone over the same weights (storage shared when the dtype is unchanged), so that
    casting an export wrapper (``.to(fp16)``) never touches the loaded model."""
    attn = backbone.vision.config._attn_implementation
    with parameters_on_meta():
        clone = EagleBackbone(backbone.config, attn_implementation=attn)
    state = {k: v.detach().to(dtype or v.dtype) for k, v in backbone.state_dict().items()}
    clone.load_state_dict(state, strict=True, assign=True)
    return clone.requires_grad_(False).eval()


class VisionGraph(nn.Module):
    """images uint8 [n, h, w, 3], position_grid [gh, gw, Dv] → image_embeds [n, t, E] for any size
    h x w = (gh·p) x (gw·p) with gh, gw multiples of the unshuffle factor."""

    def __init__(self, backbone: EagleBackbone, dtype: torch.dtype | None = None):
        super().__init__()
        config = backbone.config
        self.patch = config.backbone.vision.patch_size
        self.factor = config.backbone.unshuffle_factor
        parts = detached_backbone(backbone, dtype)
        self.patch_embedding = parts.vision.embeddings.patch_embedding
        self.encoder_layers = parts.vision.encoder.layers
        self.post_layernorm = parts.vision.post_layernorm
        self.mlp1 = parts.projector
        # the learned table in fp32, a plain attribute: read by position_grid (the host's job), not exported
        self.side = config.backbone.vision.grid_side
        self.table = parts.vision.embeddings.position_embedding.weight.detach().float().clone()

    def position_grid(self, height: int, width: int) -> np.ndarray:
        """The reference's position grid for an h x w image: [h/p, w/p, Dv] float32 (PyTorch resize)."""
        step = self.patch * self.factor
        if height <= 0 or width <= 0 or height % step or width % step:
            raise ExportError(f"vision image size {height}x{width} — expected positive multiples of {step}")
        gh, gw = height // self.patch, width // self.patch
        with torch.no_grad():
            return resize_position_table(self.table, self.side, gh, gw).reshape(gh, gw, -1).numpy()

    def grid_feed(self, name: str, height: int, width: int) -> np.ndarray:
        """The per-size input ``name`` (``position_grid``) for h x w images (``dataflow.GridSource``)."""
        if name != "position_grid":
            raise ExportError(f"the vision graph has no per-size input {name!r} — expected position_grid")
        return self.position_grid(height, width)

    def table_grid(self) -> np.ndarray:
        """The learned table as the square grid [side, side, Dv] float32 the export ships for the host."""
        return self.table.reshape(self.side, self.side, -1).numpy()

    def forward(self, images: torch.Tensor, position_grid: torch.Tensor) -> torch.Tensor:
        p, f = self.patch, self.factor
        gh, gw, d = position_grid.shape
        dtype = self.patch_embedding.weight.dtype
        x = (images.to(torch.float32) - 127.5) / 127.5  # [n, h, w, 3] in [-1, 1]
        x = x.reshape(-1, gh, p, gw, p, 3)  # [n, gh, pr, gw, pc, 3]
        x = x.permute(0, 1, 3, 2, 4, 5).reshape(-1, gh * gw, p * p * 3)  # [n, P, (pr, pc, ch)]
        x = self.patch_embedding(x.to(dtype)) + position_grid.to(dtype).reshape(gh * gw, d)  # [n, P, D]
        for layer in self.encoder_layers:
            x = layer(x, None)
        x = self.post_layernorm(x)  # [n, P, D]
        # pixel-unshuffle: token (r, s), channel c·f² + f·i + j ← patch (f·r + i, f·s + j), channel c
        x = x.reshape(-1, gh // f, f, gw // f, f, d)  # [n, r, i, s, j, D]
        x = x.permute(0, 1, 3, 5, 2, 4)  # [n, r, s, D, i, j]
        x = x.reshape(-1, (gh // f) * (gw // f), d * f * f)  # [n, t, D·f²]
        return self.mlp1(x)  # [n, t, E]
