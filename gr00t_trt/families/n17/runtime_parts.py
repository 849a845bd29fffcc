"""GR00T N1.7's host-side parts for its torch-free runtime face: the preprocessor and the vision tables.

``families/n17/runtime.py`` (the FamilyRuntime) hands these to the runtime, as ``families/n16/runtime.py``
does N1.6's Eagle processor and position grids. An export directory carries everything they read:
processor_config.json, statistics.json, embodiment_id.json, tokenizer.json, vision_positions.npy and the
manifest (dims Ds, U, Dv, Dr; dynamic dim S; the vision section of ``grids.vision_declaration``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...base.errors import CheckpointError, ManifestError
from .grids import N17Grids
from .processing.feeds import N17HostProcessor
from .processing.prompt import PIXELS_PER_TOKEN
from .processing.tokenizer import load_qwen3_vl_tokenizer


def make_preprocessor(folder: str | Path, manifest: Any, **options: Any) -> N17HostProcessor:
    """The N1.7 processor of an export: Qwen3-VL image chain and prompt, M-RoPE ids, q01/q99 statistics.
    Prompts longer than the export's largest sequence are refused; ``options``: max_batch, cache bounds.
    The tokenizer must be in the export (no Hub look-up on a robot)."""
    folder = Path(folder)
    if manifest.pixels_per_token != PIXELS_PER_TOKEN:
        raise ManifestError(f"{folder}: the manifest's pixels_per_token is {manifest.pixels_per_token}, N1.7's image "
                            f"tokens are {PIXELS_PER_TOKEN} pixels (32x32) — not an N1.7 export?")
    options.setdefault("max_prompt_tokens", manifest.dynamic_dims["S"][-1])
    processor = N17HostProcessor.from_dir(folder, load_qwen3_vl_tokenizer(folder), **options)
    if processor.spec.settings.max_state_dim != manifest.dims["Ds"]:
        raise CheckpointError(f"{folder}: processor max_state_dim {processor.spec.settings.max_state_dim} differs "
                              f"from the model's padded state dim Ds={manifest.dims['Ds']}")
    image_token = manifest.tokens.get("image_token_index")
    if image_token is not None and image_token != processor.tokenizer.image_token_id:
        raise ManifestError(f"{folder}: the manifest's image_token_index {image_token} is not the tokenizer's "
                            f"<|image_pad|> id {processor.tokenizer.image_token_id} — re-export")
    return processor


def make_grids(folder: str | Path, manifest: Any, dtype: np.dtype = np.dtype(np.float32)) -> N17Grids:
    """The vision graph's per-size tables (position table, rotary cos/sin) in the graph's input dtype."""
    return N17Grids.from_manifest(manifest, folder, dtype)
