"""The N1.7 vision tower (Qwen3-VL, spec §3.1-3.5) as one graph per preprocessed image size.

The modules are transformers' ``Qwen3VLVisionModel`` (so the state_dict keys are the checkpoint's);
the forward is written here, per image size: patch rows in merge-block order [n·P, 1536] plus the two
per-size tables (the resampled learned position embedding and the 2-D rotary cos/sin) → merged image
embeddings [n·N, E] and the DeepStack features [k, n·N, E]. Both tables depend only on the patch grid,
so an export bakes them per size, as NVIDIA's does (spec §7.1). Attention stays within each image:
images of one size are a batch, never one sequence. The tables reproduce the original's rounding in
a bf16 model (spec §3.9: transformers 4.57 builds them in the parameters' dtype).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...base.errors import ObservationError
from .config import N17Config


def merge_block_order(grid_h: int, grid_w: int, merge: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, col) of every patch in merge-block order: blocks row-major, the merge×merge patches of a
    block consecutive (row-major inside the block) → two int64 [gh·gw]."""
    rows = torch.arange(grid_h).view(grid_h // merge, merge, 1, 1).expand(-1, -1, grid_w // merge, merge)
    cols = torch.arange(grid_w).view(1, 1, grid_w // merge, merge).expand(grid_h // merge, merge, -1, -1)
    return rows.permute(0, 2, 1, 3).flatten(), cols.permute(0, 2, 1, 3).flatten()


def position_table(pos_embed: torch.Tensor, grid_h: int, grid_w: int, merge: int) -> torch.Tensor:
    """The learned square table [side², D] resampled to a gh×gw patch grid, in merge-block order.

    Align-corners bilinear (r = linspace(0, side−1, gh), likewise c): the four corner rows are weighted
    with fp32 weights cast to the table's dtype, multiplied in that dtype and summed in the order
    (r0,c0), (r0,c1), (r1,c0), (r1,c1), as the original does → [gh·gw, D].
    """
    side = int(round(pos_embed.shape[0] ** 0.5))
    r = torch.linspace(0, side - 1, grid_h)
    c = torch.linspace(0, side - 1, grid_w)
    r0, c0 = r.int(), c.int()
    r1, c1 = (r0 + 1).clip(max=side - 1), (c0 + 1).clip(max=side - 1)
    dr, dc = (r - r0)[:, None], (c - c0)[None, :]  # [gh, 1], [1, gw]
    corners = ((r0[:, None], c0[None], (1 - dr) * (1 - dc)), (r0[:, None], c1[None], (1 - dr) * dc),
               (r1[:, None], c0[None], dr * (1 - dc)), (r1[:, None], c1[None], dr * dc))  # fmt: skip
    table = None
    for rows, cols, weight in corners:
        term = pos_embed[(rows * side + cols).flatten()] * weight.flatten().to(pos_embed.dtype)[:, None]
        table = term if table is None else table + term
    rows, cols = merge_block_order(grid_h, grid_w, merge)
    return table[rows * grid_w + cols]  # raster → merge-block order


def rotary_table(head_dim: int, theta: float, grid_h: int, grid_w: int, merge: int,
                 dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """2-D RoPE cos/sin [gh·gw, head_dim] in merge-block order: head_dim/4 frequencies for the row,
    head_dim/4 for the column, the pair repeated twice (half-rotation convention).

    The original's inv_freq buffer, positions and their product are in the model's dtype (a bf16 model
    rounds all three) and cos/sin are taken in it too; they are upcast for the rotation.
    """
    quarter = head_dim // 4
    inv_freq = 1.0 / (theta ** (torch.arange(0, 2 * quarter, 2, dtype=torch.float32) / (2 * quarter)))
    freqs = torch.outer(torch.arange(max(grid_h, grid_w), dtype=dtype), inv_freq.to(dtype))  # [max, head_dim/4]
    rows, cols = merge_block_order(grid_h, grid_w, merge)
    angles = torch.cat([freqs[rows], freqs[cols]], dim=-1)  # [P, head_dim/2]
    angles = torch.cat([angles, angles], dim=-1)  # [P, head_dim]
    return angles.cos(), angles.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) → (−x2, x1) over the last dim's halves (real-valued; no complex numbers)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x·cos + rotate_half(x)·sin in fp32, cast back (the vision tower's convention)."""
    xf = x.float()
    return (xf * cos.float() + rotate_half(xf) * sin.float()).to(x.dtype)


class VisionGraph(nn.Module):
    """One vision graph: uses the modules of a ``Qwen3VLVisionModel`` (weights shared, not copied)."""

    def __init__(self, visual: nn.Module, config: N17Config):
        super().__init__()
        self.visual = visual
        self.vision = config.backbone.vision

    def tables(self, grid_h: int, grid_w: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The per-size inputs: position table [P, D] and rotary cos, sin [P, head_dim] (P = gh·gw)."""
        v = self.vision
        pos = position_table(self.visual.pos_embed.weight, grid_h, grid_w, v.spatial_merge_size)
        dtype = self.visual.pos_embed.weight.dtype
        cos, sin = rotary_table(v.head_dim, v.rope_theta, grid_h, grid_w, v.spatial_merge_size, dtype)
        return pos, cos, sin

    def block(self, blk: nn.Module, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Pre-LN block on [n, P, D]: full attention within each image, 2-D RoPE on q and k, tanh-GELU MLP."""
        n, p, d = x.shape
        heads = self.vision.num_heads
        qkv = blk.attn.qkv(blk.norm1(x)).view(n, p, 3, heads, d // heads).permute(2, 0, 3, 1, 4)  # [3, n, H, P, Dh]
        q, k, v = qkv.unbind(0)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        attn = F.scaled_dot_product_attention(q, k, v)  # scale Dh^-½, no mask
        x = x + blk.attn.proj(attn.transpose(1, 2).reshape(n, p, d))
        return x + blk.mlp(blk.norm2(x))

    def forward(self, pixel_values: torch.Tensor, pos: torch.Tensor, cos: torch.Tensor,
                sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pixel_values [n·P, C·T·p·p] (merge-block order, images concatenated), per-size tables → image
        embeddings [n·N, E] and DeepStack features [k, n·N, E] (N = P / merge²)."""
        v = self.vision
        p = pos.shape[0]
        if pixel_values.ndim != 2 or pixel_values.shape[1] != v.patch_dim or pixel_values.shape[0] % p:
            raise ObservationError(f"pixel_values has shape {list(pixel_values.shape)} — expected [n·{p}, {v.patch_dim}]")
        x = self.visual.patch_embed(pixel_values)  # Conv3d, kernel = stride = (T, p, p) → [n·P, D]
        x = (x + pos.repeat(pixel_values.shape[0] // p, 1).to(x.dtype)).view(-1, p, v.hidden_size)
        embeds, deepstack = self.encode(x, cos, sin)
        return embeds, torch.stack(deepstack)

    def encode(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Embedded patches [n, P, D] (position table added) → the blocks, the merger and the DeepStack
        mergers: image embeddings [n·N, E] and k DeepStack features [n·N, E] (shared with the export)."""
        v = self.vision
        deepstack = []
        for index, blk in enumerate(self.visual.blocks):
            x = self.block(blk, x, cos, sin)
            if index in v.deepstack_visual_indexes:
                merger = self.visual.deepstack_merger_list[v.deepstack_visual_indexes.index(index)]
                deepstack.append(merger(x.reshape(-1, v.hidden_size)))  # groups 4 consecutive tokens, then LN
        return self.visual.merger(x.reshape(-1, v.hidden_size)), deepstack  # merger: LN per token, then groups
