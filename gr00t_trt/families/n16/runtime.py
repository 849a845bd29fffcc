"""GR00T N1.6's torch-free face (FamilyRuntime): its export contract and its host-side processing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .contract import CONTRACT

__all__ = ["CONTRACT", "make_grids", "make_preprocessor"]


def make_preprocessor(folder: Path, manifest: Any, **options: Any) -> Any:
    """The Eagle processor of an N1.6 export: SigLIP2 image chain, Eagle prompt, state/action statistics."""
    from .processing.preprocess import Preprocessor

    return Preprocessor.from_dir(
        folder,
        max_state_dim=manifest.dims["Ds"],
        image_token_index=manifest.tokens["image_token_index"],
        pixels_per_token=manifest.pixels_per_token,
        max_prompt_tokens=manifest.dynamic_dims["S"][-1],  # longer prompts are refused, never cached
        max_batch=manifest.dynamic_dims["B"][-1],  # larger batches are refused before any image is resized
        **options,
    )


def make_grids(folder: Path, manifest: Any, vision: Any) -> Any:
    """The vision graph's per-size input (``position_grid``: SigLIP2's learned table resampled to the
    size's patch grid) as a ``GridSource``-like callable ``(name, rows, cols)``, from the table the export
    ships; ``vision`` is the manifest's vision graph entry."""
    from ...base.errors import ManifestError
    from ...processing.position_grid import PositionGrids, load_table
    from ...runtime.backend import numpy_dtype

    table_file = manifest.vision.get("position_table")
    if not table_file:
        raise ManifestError(f"{folder}: the manifest declares no vision position table — re-export")
    grid = vision.tensor("position_grid")
    grids = PositionGrids(load_table(Path(folder) / table_file, manifest.dims["Dv"]), manifest.dims["U"],
                          numpy_dtype(grid.dtype))

    def source(name: str, rows: int, cols: int):
        if name != "position_grid":
            raise ManifestError(f"the N1.6 vision graph has no per-image-size input {name!r} — re-export")
        return grids(rows, cols)

    return source
