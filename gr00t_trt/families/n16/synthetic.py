"""Synthetic GR00T N1.6 checkpoints in the real layout, for tests, benchmarks and docs.

``make_checkpoint`` writes what a real checkpoint folder holds (spec §5.6): config.json, sharded
safetensors + index with every real key (including the unused ``lm_head`` and SigLIP2 pooling head),
bf16 backbone and fp32 action head (the dtype mix of real fine-tunes), processor files and a
tokenizer. Weights are random with scales that keep activations O(1) through every layer, so outputs
are never degenerate. Tensors are generated one at a time and streamed to disk, so even the full
3.3 G-parameter preset never holds the model in memory.

``make_header_only_checkpoint`` writes the same files but with safetensors whose data region is a
sparse hole: every header is exact, no data is written. ``inspect`` and layout checks on the full
config run on it in milliseconds with no disk or RAM cost.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ...base.errors import CheckpointError
from ...model.checkpoint import CONFIG_FILE
from ...model.synthetic import (
    MAX_SHARD_BYTES,
    SYNTHETIC_MARKER_KEY,
    TensorPlan,
    _write_folder,
    checkpoint_dtype,
    init_synthetic_,
    shard_budget,
    synthetic_tensor,
    write_sharded_weights,
)
from .checkpoint import expected_layout
from .config import Gr00tConfig
from .presets import preset_config


def synthetic_model(config: Gr00tConfig, seed: int = 0, dtype: torch.dtype = torch.float32, **kwargs):
    """A ``Gr00tN1d6`` with synthetic weights, in memory (no checkpoint round trip)."""
    from .model import Gr00tN1d6

    return init_synthetic_(Gr00tN1d6(config, **kwargs), seed).to(dtype)


def config_json(config: Gr00tConfig, marker: dict | None = None) -> dict:
    """config.json content: our config plus the architecture tags real checkpoints carry, and the
    synthetic marker (how it was made) so that ``make-checkpoint --force`` can recognise its own folders."""
    data = {"architectures": ["Gr00tN1d6"], "model_type": "Gr00tN1d6", **config.to_dict()}
    if marker is not None:
        data[SYNTHETIC_MARKER_KEY] = marker
    return data


def tensor_plan(config: Gr00tConfig) -> TensorPlan:
    """Every tensor of a checkpoint of this config, in state_dict order, with its storage dtype."""
    return [(key, shape, checkpoint_dtype(key)) for key, shape in expected_layout(config).items()]



def make_checkpoint(
    out_dir: str | Path, preset: str = "tiny", seed: int = 0, *, overwrite: bool = False
) -> Path:
    """Write a complete synthetic checkpoint of a preset ("tiny", "small" or "full") → its folder."""
    try:
        config = preset_config(preset)
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None
    plan = tensor_plan(config)
    shard_bytes = shard_budget(plan, MAX_SHARD_BYTES)

    def write(folder: Path) -> None:
        marker = {"preset": preset, "seed": seed}
        (folder / CONFIG_FILE).write_text(json.dumps(config_json(config, marker), indent=2) + "\n")
        write_sharded_weights(
            folder, plan, lambda key, shape: synthetic_tensor(key, shape, seed), shard_bytes
        )
        from .synthetic_processor import write_processor_files, write_synthetic_tokenizer

        write_processor_files(folder, config, seed)
        write_synthetic_tokenizer(folder, config)

    return _write_folder(out_dir, overwrite, write)


def make_header_only_checkpoint(
    out_dir: str | Path,
    config: Gr00tConfig,
    *,
    overwrite: bool = False,
    max_shard_bytes: int = MAX_SHARD_BYTES,
) -> Path:
    """config.json + sharded safetensors whose headers list every tensor with exact offsets and whose
    data is a sparse hole (``truncate``): real layout and sizes, no disk or RAM cost. Loading weights
    from it gives zeros; reading headers (inspect, layout checks) is exact."""
    plan = tensor_plan(config)
    shard_bytes = shard_budget(plan, max_shard_bytes)

    def write(folder: Path) -> None:
        marker = {"preset": None, "header_only": True}
        (folder / CONFIG_FILE).write_text(json.dumps(config_json(config, marker), indent=2) + "\n")
        write_sharded_weights(folder, plan, None, shard_bytes)

    return _write_folder(out_dir, overwrite, write)
