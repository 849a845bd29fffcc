"""GR00T N1.6's torch-free face (FamilyRuntime): its export contract and its host-side processing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...contract.dataflow import CONTROL_STEP
from ...contract.graphs import DIMS, GRAPH_SPECS

__all__ = ["CONTROL_STEP", "DIMS", "GRAPH_SPECS", "make_preprocessor"]


def make_preprocessor(folder: Path, manifest: Any, **options: Any) -> Any:
    """The Eagle processor of an N1.6 export: SigLIP2 image chain, Eagle prompt, state/action statistics."""
    from ...processing.preprocess import Preprocessor

    return Preprocessor.from_dir(
        folder,
        max_state_dim=manifest.dims["Ds"],
        image_token_index=manifest.tokens["image_token_index"],
        pixels_per_token=manifest.pixels_per_token,
        max_prompt_tokens=manifest.dynamic_dims["S"][-1],  # longer prompts are refused, never cached
        **options,
    )
