"""``vision`` graph: uint8 camera images of any size → merged image embeddings and the three DeepStack
features (``contract.VISION``).

In the graph, per image: scale to [-1, 1] as the host's ``normalize_patches``, cut 16x16 patches in
merge-block order as ``patch_rows`` (2x2 blocks row-major, the four patches of a block consecutive), and
embed them with one MatMul. The Conv3d sees every frame twice (temporal patch 2), so its two temporal
kernel halves act on equal pixels: their sum is the 2-D kernel (exact in real arithmetic; summed in
fp32). The per-size tables — the learned position table resampled to this patch grid and the 2-D
rotary cos/sin — are inputs the host computes once per size ([gh, gw, X] in raster order, reordered
here like the patches), so one graph serves every size and no Resize is exported. Blocks and mergers are the reference's (``VisionGraph.encode``): attention stays
within each image (images are the batch dim n).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ....base.errors import ExportError
from ....model.holder import Holder
from ..config import N17Config
from ..vision import VisionGraph, merge_block_order, position_table, rotary_table
from .weights import detached


class N17VisionGraph(nn.Module):
    """(images, position_table, rotary_cos, rotary_sin) → (image_embeds, deepstack_0, deepstack_1, deepstack_2)."""

    def __init__(self, visual: nn.Module, config: N17Config, dtype: torch.dtype | None = None):
        super().__init__()
        v = config.backbone.vision
        self.vision = v
        parts = Holder(blocks=visual.blocks, merger=visual.merger, deepstack_merger_list=visual.deepstack_merger_list)
        self.tower = VisionGraph(detached(parts, dtype), config)  # blocks + mergers, weights shared (not "graph": the name of a GraphModule's own FX graph)
        conv = visual.patch_embed.proj  # [D, C, T, p, p]
        kernel = conv.weight.detach().float().sum(dim=2).flatten(1)  # both frames equal: [D, (c, y, x)]
        self.patch_embedding = nn.Linear(kernel.shape[1], kernel.shape[0], device="meta")
        self.patch_embedding.weight = nn.Parameter(kernel.to(dtype or conv.weight.dtype), requires_grad=False)
        self.patch_embedding.bias = nn.Parameter(conv.bias.detach().to(dtype or conv.bias.dtype), requires_grad=False)
        # the host's learned table (fp32 copy, a plain attribute: never exported, never cast) and the dtype
        # whose rounding the reference's per-size tables follow (spec §3.9)
        self.table = visual.pos_embed.weight.detach().float().clone()
        self.table_dtype = visual.pos_embed.weight.dtype

    def learned_table(self) -> np.ndarray:
        """The learned position table as the square grid [side, side, Dv] float32 (vision_positions.npy)."""
        side = self.vision.grid_side
        return self.table.reshape(side, side, -1).numpy()

    def tables(self, height: int, width: int) -> dict[str, np.ndarray]:
        """The reference's per-size inputs for h x w images, each [gh, gw, X] float32 in raster order (the
        graph reorders them as it does the patches): position_table (X = Dv), rotary_cos, rotary_sin (X = Dr)."""
        v = self.vision
        step = v.patch_size * v.spatial_merge_size
        if height <= 0 or width <= 0 or height % step or width % step:
            raise ExportError(f"vision image size {height}x{width} — expected positive multiples of {step}")
        gh, gw = height // v.patch_size, width // v.patch_size
        rows, cols = merge_block_order(gh, gw, v.spatial_merge_size)
        with torch.no_grad():
            pos = position_table(self.table.to(self.table_dtype), gh, gw, v.spatial_merge_size)
            cos, sin = rotary_table(v.head_dim, v.rope_theta, gh, gw, v.spatial_merge_size, self.table_dtype)
            result = {}
            for name, table in (("position_table", pos), ("rotary_cos", cos), ("rotary_sin", sin)):
                raster = torch.empty_like(table)
                raster[rows * gw + cols] = table  # merge-block rows back to their raster places
                result[name] = raster.reshape(gh, gw, -1).float().numpy()
        return result

    def grid_feed(self, name: str, height: int, width: int) -> np.ndarray:
        """The per-size input ``name`` for h x w images (``dataflow.GridSource``, as N1.6's vision graph)."""
        tables = self.tables(height, width)
        if name not in tables:
            raise ExportError(f"the vision graph has no per-size input {name!r} — expected one of {', '.join(tables)}")
        return tables[name]

    def table_grid(self) -> np.ndarray:
        """``learned_table`` under the name the export driver asks every family's vision graph for."""
        return self.learned_table()

    def merge_block_rows(self, table: torch.Tensor) -> torch.Tensor:
        """[gh, gw, X] raster → [P, X] in merge-block order (the order of ``patches``)."""
        m = self.vision.spatial_merge_size
        gh, gw, x = table.shape
        table = table.reshape(gh // m, m, gw // m, m, x)  # [bh, ih, bw, iw, X]
        return table.permute(0, 2, 1, 3, 4).reshape(-1, x)  # [bh, bw, ih, iw, X] -> [P, X]

    def patches(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [n, h, w, 3] → float32 [n, P, 3·p·p]: (x − 127.5)/127.5, merge-block order, (c, y, x)."""
        v = self.vision
        p, m = v.patch_size, v.spatial_merge_size
        n, h, w, c = images.shape
        x = (images.to(torch.float32) - 127.5) / 127.5
        x = x.reshape(n, h // (p * m), m, p, w // (p * m), m, p, c)  # [n, bh, ih, y, bw, iw, x, c]
        x = x.permute(0, 1, 4, 2, 5, 7, 3, 6)  # [n, bh, bw, ih, iw, c, y, x]
        return x.reshape(n, -1, c * p * p)

    def forward(self, images: torch.Tensor, position_table: torch.Tensor, rotary_cos: torch.Tensor,
                rotary_sin: torch.Tensor):
        dtype = self.patch_embedding.weight.dtype
        n = images.shape[0]
        pos, cos, sin = (self.merge_block_rows(t) for t in (position_table, rotary_cos, rotary_sin))
        x = self.patch_embedding(self.patches(images).to(dtype)) + pos.to(dtype)  # [n, P, Dv]
        embeds, deepstack = self.tower.encode(x, cos, sin)  # [n·t, E] each
        return tuple(y.reshape(n, -1, y.shape[-1]) for y in (embeds, *deepstack))  # [n, t, E] each
