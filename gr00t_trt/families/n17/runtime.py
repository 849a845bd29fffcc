"""GR00T N1.7's torch-free face (FamilyRuntime): its export contract and its host-side processing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .contract import CONTRACT

__all__ = ["CONTRACT", "make_grids", "make_preprocessor"]


def make_preprocessor(folder: Path, manifest: Any, **options: Any) -> Any:
    """The Qwen3-VL processor of an N1.7 export (image chain, prompt, M-RoPE ids, q01/q99 statistics),
    bounded by the export's batch and sequence ranges."""
    from .runtime_parts import make_preprocessor as make

    options.setdefault("max_batch", manifest.dynamic_dims["B"][-1])
    return make(folder, manifest, **options)


def make_grids(folder: Path, manifest: Any, vision: Any) -> Any:
    """The vision graph's per-size tables (position table, rotary cos/sin) as the graph declares them:
    [gh, gw, X] in raster order, in its input dtype (``vision``: the manifest's vision graph entry)."""
    from ...runtime.backend import numpy_dtype
    from .runtime_parts import make_grids as make

    return make(folder, manifest, numpy_dtype(vision.tensor("position_table").dtype))
