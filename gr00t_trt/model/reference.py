"""The unoptimised PyTorch reference an export is checked against (``verify`` and the CPU preflight)."""

from __future__ import annotations

import dataclasses
import json

import torch

from ..base.errors import VerificationError


def load_reference(checkpoint, manifest, export_dir, *, load):
    """(model, config): the unoptimised fp32 reference of ``checkpoint`` (read by the family's ``load``),
    refused unless its config is the export's, run with the export's number of denoising steps."""
    model, config, _ = load(checkpoint, dtype=torch.float32)
    as_json = json.loads(json.dumps(config.to_dict()))  # the manifest holds the config as JSON (lists, not tuples)
    if dict(as_json, num_inference_timesteps=manifest.steps) != dict(manifest.model, num_inference_timesteps=manifest.steps):
        raise VerificationError(
            f"{export_dir} was exported from a checkpoint with a different config than {checkpoint} — "
            "pass the checkpoint it was exported from"
        )
    config = dataclasses.replace(config, num_inference_timesteps=manifest.steps)
    model.config = model.action_head.config = config
    return model, config
