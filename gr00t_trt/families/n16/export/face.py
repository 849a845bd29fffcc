"""GR00T N1.6's PyTorch face (FamilyExport): config, checkpoint layout, synthetic checkpoints, the
faithful reference, the graphs' export wrappers and the host pieces an export writes — the existing N1.6
modules, named in one place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ....processing.images import processed_image_size
from ....processing.position_grid import vision_declaration as _vision_declaration
from ....processing.tokenizer import save_tokenizer
from ..checkpoint import compare_layout, expected_layout, load_model, open_model
from ..config import Gr00tConfig
from ..fp8_plan import FP8_KEEP, FP8_PLAN
from ..inspect import count_components, estimate_engines
from ..int8_plan import INT8_KEEP, INT8_PLAN
from ..presets import preset_config
from ..processing.modality import BUILTIN_EMBODIMENT_IDS
from ..processing.modality import load_processor_spec as processor_spec
from ..synthetic import make_checkpoint
from .examples import example_step
from .graph_modules import graph_modules, segment_modules, static_dims

__all__ = [
    "BUILTIN_EMBODIMENT_IDS", "FP8_KEEP", "FP8_PLAN", "INT8_KEEP", "INT8_PLAN", "compare_layout", "count_components", "estimate_engines", "example_step", "expected_layout", "graph_modules", "host_processor", "load_reference",
    "make_checkpoint", "manifest_tokens", "open_model", "preset_config", "processed_image_size", "processor_spec",
    "read_config", "reference_case", "timed_reference", "resolve_tokenizer", "save_tokenizer", "segment_modules", "static_dims",
    "vision_declaration",
]


def read_config(folder: Path) -> Gr00tConfig:
    """An N1.6 checkpoint's config.json."""
    return Gr00tConfig.from_file(Path(folder) / "config.json")


def resolve_tokenizer(folder: Path, override: str | None, config: Gr00tConfig):
    """The Eagle tokenizer beside the checkpoint (or ``override``), checked against the config."""
    from ....processing.tokenizer import resolve_tokenizer as resolve

    return resolve(folder, override, config.backbone.image_token_index, config.backbone.text.vocab_size)


def load_reference(checkpoint: Any, manifest: Any, export_dir: Any):
    """(model, config): the fp32 N1.6 reference of ``checkpoint``, checked against the export's config."""
    from ....model.reference import load_reference as load

    return load(checkpoint, manifest, export_dir, load=load_model)


def host_processor(processor: Any, tokenizer: Any, config: Gr00tConfig):
    """The Eagle preprocessor on a checkpoint's processor spec (the export's calibration observations)."""
    from ..processing.preprocess import Preprocessor

    return Preprocessor(processor, tokenizer, max_state_dim=config.max_state_dim,
                        image_token_index=config.backbone.image_token_index,
                        pixels_per_token=config.patch_tokens_per_image_pixel)


def manifest_tokens(config: Gr00tConfig, tokenizer: Any) -> dict[str, int]:
    """The token ids the runtime needs (manifest ``tokens``)."""
    return {
        "image_token_index": config.backbone.image_token_index,
        "image_start_token_id": config.backbone.image_start_token_id,
        "image_end_token_id": config.backbone.image_end_token_id,
        "pad_token_id": int(tokenizer.pad_token_id),
    }


def vision_declaration(config: Gr00tConfig) -> dict[str, str]:
    """The manifest's ``vision`` section (the per-size position grid and the table it is resampled from)."""
    return _vision_declaration()


def timed_reference(model: Any, inputs: Any, noise: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
    """The reference's control step split as bench reports it: seconds of vision, backbone and action
    head, and the normalised actions (float32)."""
    import time

    import torch

    ids, attention = torch.from_numpy(inputs.input_ids), torch.from_numpy(inputs.attention_mask)
    start = time.perf_counter()
    embeds = model.encode_images([torch.from_numpy(np.array(im)) for im in inputs.images])
    seen = time.perf_counter()
    features = model.backbone(ids, embeds, attention)
    backboned = time.perf_counter()
    action = model.action_head.reference_denoise(
        features, ids == model.config.backbone.image_token_index, attention,
        torch.from_numpy(inputs.state).float(), torch.from_numpy(inputs.embodiment_id), torch.from_numpy(noise))
    done = time.perf_counter()
    return {"vision": seen - start, "backbone": backboned - seen, "action head": done - backboned}, action.float().numpy()


def reference_case(model: Any, inputs: Any, noise: np.ndarray):
    """One reference control step of the N1.6 model on preprocessed ``inputs`` (``ModelInputs``)."""
    import torch

    from ....verification.reference_case import ReferenceCase

    t = {
        "input_ids": torch.from_numpy(inputs.input_ids),
        "attention_mask": torch.from_numpy(inputs.attention_mask),
        "image_mask": torch.from_numpy(inputs.image_mask),
        "state": torch.from_numpy(inputs.state),
        "embodiment_id": torch.from_numpy(inputs.embodiment_id),
        "noise": torch.from_numpy(noise),
    }
    images = [torch.from_numpy(np.array(im)) for im in inputs.images]  # writable copies
    with torch.no_grad():
        ref = model.reference_get_action(t["input_ids"], t["attention_mask"], images, t["state"],
                                         t["embodiment_id"], t["noise"])
        head = model.action_head
        vl = head.encode_context(ref.backbone_features)
        state_features = head.encode_state(t["state"], t["embodiment_id"])
        x, steps = t["noise"], [noise]
        for k in range(head.config.num_inference_timesteps):
            x = head.reference_step(x, k, vl, state_features, t["image_mask"], t["attention_mask"], t["embodiment_id"])
            steps.append(x.float().numpy())
    return ReferenceCase(image_rows={"image_embeds": ref.image_embeds.numpy()},
                         backbone_features=ref.backbone_features.numpy(), steps=steps,
                         action_pred=ref.action_pred.numpy())
