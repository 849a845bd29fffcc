"""N1.7's per-image-size vision tables, computed on the host (numpy only; spec §3.2-3.3).

The N1.7 vision graph takes, besides the images, three tables that depend only on the patch grid: the
learned 48x48 position table resampled to the grid (``position_table`` [P, Dv]) and the 2-D rotary
cos/sin (``rotary_cos``/``rotary_sin`` [P, Dr]), all in merge-block order. ``N17Grids`` computes them
once per size from the table the export ships (``vision_positions.npy``, [side, side, Dv] float32) and
keeps them read-only: it is the runtime's ``GRID`` source, ``grids(name, rows, cols)``.

Numerics follow ``families/n17/vision.py`` (the torch original) at fp32:
- coordinates: the per-element formula of torch's linspace kernels (start + i·step on the first half,
  end − (n−1−i)·step on the second, float32) — what CUDA computes; torch's vectorised CPU kernel rounds
  some coordinates 1 ulp differently, so against CPU torch the position table is bitwise equal wherever
  the two linspaces agree (tests/families/n17/test_n17_grids.py);
- the four corner rows weighted with fp32 weights and summed in the original's order → bitwise;
- inv_freq θ^(−2k/Dr·2) in float32 (as torch), angles as a float32 product (bitwise), cos/sin evaluated in
  float64 and rounded once (correctly rounded; torch's vectorised cos/sin are within 1 ulp of that).
The half/bf16 exports get these fp32 tables cast to the graph's input dtype (``dtype``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ...base.errors import ManifestError
from ...processing.position_grid import TABLE_FILE, load_table

#: the vision graph's per-size inputs, in the order its declaration lists them
TABLE_INPUTS = ("position_table", "rotary_cos", "rotary_sin")


def merge_block_order(grid_h: int, grid_w: int, merge: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) int64 [gh·gw] of every patch in merge-block order: blocks row-major, the merge×merge
    patches of one block consecutive (row-major inside the block)."""
    if grid_h % merge or grid_w % merge:
        raise ValueError(f"patch grid {grid_h}x{grid_w} is not a whole number of {merge}x{merge} merge blocks")
    block_row, block_col, inner_row, inner_col = np.meshgrid(
        np.arange(grid_h // merge), np.arange(grid_w // merge), np.arange(merge), np.arange(merge), indexing="ij"
    )
    return (block_row * merge + inner_row).ravel(), (block_col * merge + inner_col).ravel()


def linspace_f32(stop: float, steps: int) -> np.ndarray:
    """float32 [steps] from 0 to ``stop`` by torch's per-element linspace formula (step in float32; the
    second half counted back from ``stop``, so both endpoints are exact)."""
    f32 = np.float32
    if steps == 1:
        return np.zeros(1, f32)
    step = (f32(stop) - f32(0)) / f32(steps - 1)
    index = np.arange(steps)
    forward = f32(0) + step * index.astype(f32)
    backward = f32(stop) - step * (steps - 1 - index).astype(f32)
    return np.where(index < steps // 2, forward, backward).astype(f32)


def position_table(table: np.ndarray, grid_h: int, grid_w: int, merge: int) -> np.ndarray:
    """The learned table [side, side, D] resampled to a gh×gw patch grid → float32 [gh·gw, D] in
    merge-block order: align-corners bilinear, the four corners' fp32 weights multiplied in and summed in
    the order (r0,c0), (r0,c1), (r1,c0), (r1,c1), as the original does."""
    side = table.shape[0]
    flat = np.asarray(table, np.float32).reshape(side * side, -1)
    r, c = linspace_f32(side - 1, grid_h), linspace_f32(side - 1, grid_w)
    r0, c0 = r.astype(np.int64), c.astype(np.int64)  # truncation, as .int() on non-negative values
    r1, c1 = np.minimum(r0 + 1, side - 1), np.minimum(c0 + 1, side - 1)
    dr, dc = (r - r0.astype(np.float32))[:, None], (c - c0.astype(np.float32))[None, :]  # [gh, 1], [1, gw]
    one = np.float32(1)
    corners = ((r0, c0, (one - dr) * (one - dc)), (r0, c1, (one - dr) * dc),
               (r1, c0, dr * (one - dc)), (r1, c1, dr * dc))  # fmt: skip
    rows, cols = merge_block_order(grid_h, grid_w, merge)
    out = None
    for row_index, col_index, weight in corners:  # gathered straight into merge-block order
        term = flat[row_index[rows] * side + col_index[cols]] * weight[rows, cols][:, None]
        out = term if out is None else out + term
    return out


def rotary_tables(head_dim: int, theta: float, grid_h: int, grid_w: int, merge: int) -> tuple[np.ndarray, np.ndarray]:
    """2-D RoPE cos, sin float32 [gh·gw, head_dim] in merge-block order: head_dim/4 frequencies for the
    patch row, head_dim/4 for the column, that pair repeated twice (half-rotation convention)."""
    if head_dim % 4:
        raise ValueError(f"the vision head dim {head_dim} is not a multiple of 4 (2-D rotary)")
    f32, quarter = np.float32, head_dim // 4
    inv_freq = f32(1) / (f32(theta) ** (np.arange(0, 2 * quarter, 2, dtype=f32) / f32(2 * quarter)))
    freqs = np.arange(max(grid_h, grid_w), dtype=f32)[:, None] * inv_freq[None, :]  # float32 products
    rows, cols = merge_block_order(grid_h, grid_w, merge)
    angles = np.concatenate([freqs[rows], freqs[cols]], axis=-1).astype(np.float64)
    angles = np.concatenate([angles, angles], axis=-1)
    return np.cos(angles).astype(f32), np.sin(angles).astype(f32)


def vision_declaration(rope_theta: float) -> dict[str, Any]:
    """The manifest's ``vision`` section of an N1.7 export: the per-size inputs the host computes, the
    shipped table they are resampled from and the rotary base (dims U, Dv, Dr give the rest)."""
    return {"graph": "vision", "grid_inputs": list(TABLE_INPUTS), "position_table": TABLE_FILE,
            "rope_theta": float(rope_theta), "resize": "align-corners bilinear, float32 (Qwen3-VL)"}


class N17Grids:
    """The vision graph's per-size tables, each computed on first use and kept read-only (a robot has
    few camera sizes): ``grids(name, rows, cols)`` for an image of rows x cols tokens."""

    def __init__(self, table: np.ndarray, *, merge: int, rotary_dim: int, rope_theta: float,
                 dtype: np.dtype = np.dtype(np.float32)) -> None:
        self.table, self.merge, self.rotary_dim = table, int(merge), int(rotary_dim)
        self.rope_theta, self.dtype = float(rope_theta), np.dtype(dtype)
        self._tables: dict[tuple[str, int, int], np.ndarray] = {}

    @classmethod
    def from_manifest(cls, manifest: Any, folder: str | Path, dtype: np.dtype = np.dtype(np.float32)) -> N17Grids:
        """From an export: ``manifest.dims`` U, Dv, Dr and its ``vision`` section's position_table and
        rope_theta (``vision_declaration``); one-line errors for a missing field or table file."""
        dims, vision = manifest.dims, manifest.vision
        missing = [f"dims.{d}" for d in ("U", "Dv", "Dr") if d not in dims]
        if not isinstance(vision, Mapping):
            missing.append("vision")
        else:
            missing += [f"vision.{k}" for k in ("position_table", "rope_theta") if k not in vision]
        if missing:
            raise ManifestError(f"{folder}: the manifest lacks {', '.join(missing)}, which N1.7's vision tables "
                                "need — re-export")
        table = load_table(Path(folder) / vision["position_table"], dims["Dv"])
        if table.shape[0] != table.shape[1]:
            raise ManifestError(f"{folder}: the vision position table is {table.shape[0]}x{table.shape[1]}, "
                                "expected a square grid; re-export")
        return cls(table, merge=dims["U"], rotary_dim=dims["Dr"], rope_theta=vision["rope_theta"], dtype=dtype)

    def __call__(self, name: str, rows: int, cols: int) -> np.ndarray:
        """The input ``name`` (one of ``TABLE_INPUTS``) for images of rows x cols tokens, as the vision graph
        declares it: [gh, gw, Dv] or [gh, gw, Dr] in raster order (the graph reorders to merge blocks)."""
        if name not in TABLE_INPUTS:
            raise ManifestError(f"the N1.7 vision graph has no per-size input {name!r} — expected one of "
                                f"{', '.join(TABLE_INPUTS)}")
        key = (name, int(rows), int(cols))
        cached = self._tables.get(key)
        if cached is None:
            grid_h, grid_w = key[1] * self.merge, key[2] * self.merge
            if name == "position_table":  # merge 1: raster order
                tables = {name: position_table(self.table, grid_h, grid_w, 1)}
            else:
                cos, sin = rotary_tables(self.rotary_dim, self.rope_theta, grid_h, grid_w, 1)
                tables = {"rotary_cos": cos, "rotary_sin": sin}
            for table_name, value in tables.items():
                value = value.reshape(grid_h, grid_w, -1).astype(self.dtype)
                value.setflags(write=False)
                self._tables[(table_name, key[1], key[2])] = value
            cached = self._tables[key]
        return cached
