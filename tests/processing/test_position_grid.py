"""The host's position grids (numpy) against PyTorch's antialiased bilinear resize, and the table file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gr00t_trt.base.errors import ManifestError
from gr00t_trt.families.n16.backbone import resize_position_table
from gr00t_trt.processing.position_grid import PositionGrids, load_table, resample_grid, table_bytes

EPS = np.finfo(np.float32).eps


def _torch_grid(table: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """The reference: EagleBackbone's resize of the flat [side², D] table, back to [rows, cols, D]."""
    side = table.shape[0]
    flat = torch.from_numpy(table.reshape(side * side, -1))
    return resize_position_table(flat, side, rows, cols).reshape(rows, cols, -1).numpy()


@pytest.mark.parametrize("side", [4, 16, 48])  # tiny, N1.6 (16x16) and N1.7 (48x48) tables
@pytest.mark.parametrize("grid", [(18, 18), (18, 24), (18, 32), (18, 42), (32, 18), (42, 18), (2, 3), (8, 44)])
def test_grid_matches_pytorch_to_fp32_rounding(side, grid):
    """Upsampling (N1.6's 16 → 18..42) and shrinking (48 → 18, where antialias widens the filter): within
    2 ulp of the table's magnitude of PyTorch, for square, 4:3, 16:9, 21:9 and portrait grids."""
    table = np.random.default_rng(side).standard_normal((side, side, 24)).astype(np.float32) * 3
    want, got = _torch_grid(table, *grid), resample_grid(table, *grid)
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.abs(got - want).max() <= 2 * EPS * np.abs(table).max()


def test_same_size_is_the_identity_and_without_antialias_shrinking_differs():
    table = np.random.default_rng(0).standard_normal((16, 16, 8)).astype(np.float32)
    assert np.array_equal(resample_grid(table, 16, 16), table)
    # shrinking 16 → 6: antialias matters (a plain bilinear resize is far from our grid)
    plain = torch.nn.functional.interpolate(torch.from_numpy(table).permute(2, 0, 1)[None], size=(6, 6),
                                            mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()
    assert np.abs(resample_grid(table, 6, 6) - plain).max() > 1e-2


def test_grids_are_computed_once_per_size_in_the_graph_dtype():
    table = np.random.default_rng(1).standard_normal((4, 4, 8)).astype(np.float32)
    grids = PositionGrids(table, patches_per_token=2, dtype=np.float16)
    first = grids(9, 16)  # a 252x448 image: 18 x 32 patches
    assert first.shape == (18, 32, 8) and first.dtype == np.float16 and not first.flags.writeable
    assert grids(9, 16) is first and grids(16, 9).shape == (32, 18, 8)
    np.testing.assert_array_equal(first, resample_grid(table, 18, 32).astype(np.float16))


def test_table_file_round_trip_and_refusals(tmp_path):
    table = np.arange(4 * 4 * 8, dtype=np.float64).reshape(4, 4, 8)
    path = tmp_path / "vision_positions.npy"
    path.write_bytes(table_bytes(table))
    loaded = load_table(path, 8)
    assert loaded.dtype == np.float32 and np.array_equal(loaded, table)
    with pytest.raises(ManifestError, match=r"holds float32 \[4, 4, 8\] — expected float32 \[G, G, 16\]"):
        load_table(path, 16)
    with pytest.raises(ManifestError, match="is missing — the vision graph needs its position table; re-export"):
        load_table(tmp_path / "absent.npy", 8)
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(ManifestError, match="is not a .npy position table"):
        load_table(tmp_path / "bad.npy", 8)
