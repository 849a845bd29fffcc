"""N1.7's per-size vision tables on the host (numpy) against the torch originals of families/n17/vision.py."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from gr00t_trt.base.errors import ManifestError
from gr00t_trt.families.n17 import vision
from gr00t_trt.families.n17.grids import (
    N17Grids,
    linspace_f32,
    merge_block_order,
    position_table,
    rotary_tables,
    vision_declaration,
)
from gr00t_trt.processing.position_grid import TABLE_FILE, table_bytes

#: patch grids (gh, gw): N1.7's real ones (256x256, 256x320, 256x352, 256x448 → 16x16/20/22/28), portrait,
#: tiny, and sizes where torch's vectorised CPU linspace rounds differently (30, 46)
GRIDS = [(16, 16), (16, 20), (16, 22), (16, 28), (28, 16), (2, 2), (4, 6), (30, 46)]


def _table(side: int, width: int = 24) -> np.ndarray:
    return (np.random.default_rng(side).standard_normal((side, side, width)) * 3).astype(np.float32)


def _scalar_linspace(start, end, steps, **kwargs):
    """torch.linspace by the per-element formula (what CUDA computes), in torch ops."""
    if steps == 1:
        return torch.full((1,), float(start))
    step = torch.tensor(float(end) - float(start)) / (steps - 1)
    i = torch.arange(steps, dtype=torch.float32)
    return torch.where(i < steps // 2, float(start) + step * i, float(end) - step * (steps - 1 - i))


def _within_one_ulp(got: np.ndarray, want: np.ndarray) -> bool:
    return bool((np.abs(got - want) <= np.spacing(np.maximum(np.abs(got), np.abs(want)))).all())


def test_linspace_is_torch_per_element_formula_and_cpu_torch_is_within_one_ulp():
    for steps in range(1, 120):
        got = linspace_f32(47, steps)
        assert np.array_equal(got, _scalar_linspace(0, 47, steps).numpy()), steps
        assert got[0] == 0 and got[-1] == (47 if steps > 1 else 0)
        assert _within_one_ulp(got, torch.linspace(0, 47, steps).numpy()), steps


@pytest.mark.parametrize("side", [8, 48])  # tiny preset (64 positions) and the real 48x48 table
@pytest.mark.parametrize("grid", GRIDS)
def test_position_table_is_bitwise_the_torch_original(side, grid, monkeypatch):
    table = _table(side)
    flat = torch.from_numpy(table.reshape(side * side, -1))
    got = position_table(table, *grid, merge=2)
    assert got.dtype == np.float32 and got.shape == (grid[0] * grid[1], 24)
    # bitwise wherever torch's CPU linspace gives the per-element coordinates; otherwise with them
    if not all(torch.equal(torch.linspace(0, side - 1, n), _scalar_linspace(0, side - 1, n)) for n in grid):
        monkeypatch.setattr(vision.torch, "linspace", _scalar_linspace)
    want = vision.position_table(flat, *grid, merge=2).numpy()
    assert np.array_equal(got, want)


@pytest.mark.parametrize("head_dim, theta", [(64, 10000.0), (16, 10000.0), (8, 500.0)])
@pytest.mark.parametrize("grid", GRIDS)
def test_rotary_tables_within_one_ulp_of_the_torch_original(head_dim, theta, grid):
    cos, sin = rotary_tables(head_dim, theta, *grid, merge=2)
    want_cos, want_sin = vision.rotary_table(head_dim, theta, *grid, 2, torch.float32)
    assert cos.shape == sin.shape == (grid[0] * grid[1], head_dim) and cos.dtype == np.float32
    assert _within_one_ulp(cos, want_cos.numpy()) and _within_one_ulp(sin, want_sin.numpy())


def test_merge_block_order_is_the_originals_and_not_raster():
    rows, cols = merge_block_order(4, 6, 2)
    want_rows, want_cols = vision.merge_block_order(4, 6, 2)
    assert rows.tolist() == want_rows.tolist() and cols.tolist() == want_cols.tolist()
    assert rows[:4].tolist() == [0, 0, 1, 1] and cols[:4].tolist() == [0, 1, 0, 1]  # one 2x2 block first
    raster = position_table(_table(8), 4, 6, merge=1)  # merge 1: raster order
    assert not np.array_equal(position_table(_table(8), 4, 6, merge=2), raster)
    with pytest.raises(ValueError, match="merge blocks"):
        merge_block_order(3, 4, 2)


def _fake_export(tmp_path, side=8, width=24, **vision_overrides):
    (tmp_path / TABLE_FILE).write_bytes(table_bytes(_table(side, width)))
    manifest = SimpleNamespace(dims={"U": 2, "Dv": width, "Dr": 16},
                               vision={**vision_declaration(10000.0), **vision_overrides})
    return manifest


def test_grid_source_from_a_manifest_caches_read_only_tables_in_the_graph_dtype(tmp_path):
    manifest = _fake_export(tmp_path)
    grids = N17Grids.from_manifest(manifest, tmp_path, dtype=np.float16)
    table = grids("position_table", 8, 11)  # 8x11 tokens = 16x22 patches (a 256x352 image)
    assert table.shape == (16, 22, 24) and table.dtype == np.float16 and not table.flags.writeable
    # raster order [gh, gw, X] as the graph declares it: row-major over the patch grid
    assert np.array_equal(table, position_table(_table(8), 16, 22, 1).reshape(16, 22, 24).astype(np.float16))
    rows, cols = merge_block_order(16, 22, 2)  # the graph's reorder gives the original's merge-block table
    assert np.array_equal(table[rows, cols], position_table(_table(8), 16, 22, 2).astype(np.float16))
    cos, sin = grids("rotary_cos", 8, 11), grids("rotary_sin", 8, 11)
    want_cos, want_sin = rotary_tables(16, 10000.0, 16, 22, 2)
    assert np.array_equal(cos[rows, cols], want_cos.astype(np.float16))
    assert np.array_equal(sin[rows, cols], want_sin.astype(np.float16))
    assert grids("position_table", 8, 11) is table and grids("rotary_sin", 8, 11) is sin  # computed once
    assert grids("position_table", 11, 8).shape == (22, 16, 24)  # portrait is another size
    with pytest.raises(ManifestError, match="no per-size input 'position_grid'"):
        grids("position_grid", 8, 11)


def test_manifest_without_the_fields_or_the_table_is_refused_in_one_line(tmp_path):
    manifest = _fake_export(tmp_path)
    del manifest.dims["Dr"], manifest.vision["rope_theta"]
    with pytest.raises(ManifestError, match=r"lacks dims\.Dr, vision\.rope_theta") as info:
        N17Grids.from_manifest(manifest, tmp_path)
    assert "\n" not in str(info.value)
    with pytest.raises(ManifestError, match=r"expected float32 \[G, G, 32\]"):
        N17Grids.from_manifest(SimpleNamespace(dims={"U": 2, "Dv": 32, "Dr": 16}, vision=vision_declaration(1e4)),
                               tmp_path)
    (tmp_path / TABLE_FILE).unlink()
    with pytest.raises(ManifestError, match="vision_positions.npy is missing"):
        N17Grids.from_manifest(_fake_export(tmp_path), tmp_path / "nowhere")
