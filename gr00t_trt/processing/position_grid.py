"""The vision graph's position grid, computed on the host once per image size (numpy only).

SigLIP2 adds to the patches a learned square position table resized to each image's patch grid with
PyTorch's bilinear interpolation (align_corners False, antialias True, in fp32). One exported vision graph
serves every image size because this grid is one of its inputs: the export ships the learned table beside
the graph (``vision_positions.npy``) and ``PositionGrids`` resamples it here, once per size, with the
taps and the float32 arithmetic of PyTorch's separable antialiased CPU kernel. Bit-equality is not
promised (PyTorch's vectorised builds may fuse multiply-adds), fp32 rounding is: within an ulp or two
of the table's magnitude (tests/processing/test_position_grid.py).
N1.7's tower (48x48 table resampled per image, 2-D rotary) fits the same per-size-input scheme.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..base.errors import ManifestError

TABLE_FILE = "vision_positions.npy"
#: bytes a position-table file may have (the full model's is 256 x 1152 float32 = 1.2 MB)
MAX_TABLE_BYTES = 64 << 20


def resample_taps(size_in: int, size_out: int) -> list[tuple[int, np.ndarray]]:
    """(first input index, float32 weights) of every output index of PyTorch's antialiased bilinear resize
    along one axis: a triangle filter (half-width 1, widened by the scale when shrinking) centred on the
    output pixel, taps clipped to the input and normalised to sum 1 — computed in float32 like PyTorch."""
    f32 = np.float32
    scale = f32(size_in) / f32(size_out)
    support = scale if scale >= 1 else f32(1)
    inv = f32(1) / scale if scale >= 1 else f32(1)
    taps = []
    for i in range(size_out):
        center = scale * (f32(i) + f32(0.5))
        low = max(int(center - support + f32(0.5)), 0)
        high = min(int(center + support + f32(0.5)), size_in)
        x = np.abs((np.arange(low, high, dtype=f32) - center + f32(0.5)) * inv)
        w = np.where(x < 1, f32(1) - x, f32(0)).astype(f32)
        total = w.sum(dtype=f32)
        taps.append((low, w / total if total != 0 else w))
    return taps


def _resample_axis(x: np.ndarray, axis: int, size_out: int) -> np.ndarray:
    x = np.moveaxis(x, axis, 0)
    out = np.empty((size_out, *x.shape[1:]), np.float32)
    for i, (low, weights) in enumerate(resample_taps(x.shape[0], size_out)):
        acc = weights[0] * x[low]
        for j in range(1, len(weights)):  # tap by tap in float32, as PyTorch accumulates
            acc += weights[j] * x[low + j]
        out[i] = acc
    return np.moveaxis(out, 0, axis)


def resample_grid(table: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """A [G, G', D] table resized to [rows, cols, D] float32 (bilinear, align_corners False, antialias):
    columns first, then rows, the order of PyTorch's separable CPU kernel."""
    if table.ndim != 3 or rows < 1 or cols < 1:
        raise ValueError(f"resample a [G, G', D] table to a positive grid, got {list(table.shape)} → {rows}x{cols}")
    grid = _resample_axis(np.asarray(table, np.float32), 1, cols)
    return np.ascontiguousarray(_resample_axis(grid, 0, rows))


def vision_declaration() -> dict[str, str]:
    """The manifest's ``vision`` section: the one vision graph takes, besides the images, a position grid
    per image size that the host resamples from the shipped table; the sizes it serves are the dynamic
    dims r, c (token rows and columns) times dims.R pixels (``served.py``)."""
    return {"graph": "vision", "grid_input": "position_grid", "position_table": TABLE_FILE,
            "resize": "bilinear, align_corners=False, antialias=True, float32 (PyTorch)"}


def table_bytes(table: np.ndarray) -> bytes:
    """``.npy`` bytes of a learned table [G, G, D] as float32 (what the export writes atomically)."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(table, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue()


def load_table(path: str | Path, width: int) -> np.ndarray:
    """The shipped learned table [G, G, width] float32; one-line errors for a wrong file."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path} is missing — the vision graph needs its position table; re-export")
    if path.stat().st_size > MAX_TABLE_BYTES:
        raise ManifestError(f"{path} has {path.stat().st_size} bytes, expected a position table under {MAX_TABLE_BYTES}")
    try:
        table = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{path} is not a .npy position table: {exc}") from None
    if table.dtype != np.float32 or table.ndim != 3 or table.shape[2] != width:
        raise ManifestError(f"{path} holds {table.dtype} {list(table.shape)} — expected float32 [G, G, {width}]; re-export")
    return table


class PositionGrids:
    """Position grids per image size, each computed on first use and kept (a robot has few camera sizes)."""

    def __init__(self, table: np.ndarray, patches_per_token: int, dtype: np.dtype = np.dtype(np.float32)) -> None:
        self.table, self.unit, self.dtype = table, int(patches_per_token), np.dtype(dtype)
        self._grids: dict[tuple[int, int], np.ndarray] = {}

    def __call__(self, rows: int, cols: int) -> np.ndarray:
        """The [rows·U, cols·U, D] grid of an image of rows x cols tokens, in the graph's input dtype."""
        key = (int(rows), int(cols))
        grid = self._grids.get(key)
        if grid is None:
            grid = resample_grid(self.table, key[0] * self.unit, key[1] * self.unit).astype(self.dtype)
            grid.setflags(write=False)
            self._grids[key] = grid
        return grid
