"""GR00T N1.7's PyTorch face (FamilyExport): config, checkpoint layout, synthetic checkpoints, the
faithful reference, the graphs' export wrappers and the host pieces an export writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ....model.checkpoint import resolve_checkpoint
from ..config import BUILTIN_EMBODIMENT_IDS, N17Config, preset_config, read_config
from ..fp8_plan import FP8_KEEP, FP8_PLAN, INT8_KEEP, INT8_PLAN
from ..layout import compare_layout, count_components, model_shapes
from ..model import load_model, open_model
from ..processing.modality import load_n17_processor_spec as processor_spec
from ..processing.tokenizer import save_qwen3_vl_tokenizer as save_tokenizer
from ..synthetic import make_checkpoint
from .graph_modules import graph_modules, segment_modules, static_dims

__all__ = [
    "BUILTIN_EMBODIMENT_IDS", "FP8_KEEP", "FP8_PLAN", "INT8_KEEP", "INT8_PLAN", "compare_layout", "count_components", "estimate_engines",
    "example_step", "expected_layout", "graph_modules", "host_processor", "load_reference", "make_checkpoint",
    "manifest_tokens", "open_model", "preset_config", "processed_image_size", "processor_spec", "read_config",
    "reference_case", "resolve_tokenizer", "timed_reference", "save_tokenizer", "segment_modules", "static_dims",
    "vision_declaration",
]


def expected_layout(config: N17Config) -> dict[str, tuple[int, ...]]:
    """Every tensor the reference loads, with its shape (``lm_head`` is stored but unused)."""
    return model_shapes(config)


def estimate_engines(index: Any, config: N17Config) -> list:
    """Engine weight estimates per graph group (not made for N1.7 yet: inspect shows the layout)."""
    return []


def load_reference(checkpoint: Any, manifest: Any, export_dir: Any):
    """(model, config): the fp32 N1.7 reference, refused unless its config is the export's."""
    from ....model.reference import load_reference as load

    return load(resolve_checkpoint(checkpoint), manifest, export_dir, load=load_model)


def resolve_tokenizer(folder: Path, override: Any, config: N17Config):
    """Qwen3-VL's tokenizer: beside the checkpoint, ``override``, or the Hub's Qwen3-VL files."""
    from ..processing.tokenizer import resolve_qwen3_vl_tokenizer

    return resolve_qwen3_vl_tokenizer(override or folder)


def processed_image_size(height: int, width: int, processor: Any) -> tuple[int, int]:
    """The size of an h x w camera frame after N1.7's image chain (no pixels touched)."""
    from ..processing.images import N17ImageTransform
    from ..processing.modality import read_letter_box

    settings, source = processor.settings, Path(processor.source)
    folder = source if source.is_dir() else source.parent
    transform = N17ImageTransform(settings.image_edge, settings.image_crop_fraction, read_letter_box(folder))
    return transform.output_size(height, width)


def host_processor(processor: Any, tokenizer: Any, config: N17Config):
    """The N1.7 host processor on a checkpoint's processor spec (calibration observations)."""
    from ..processing.feeds import N17HostProcessor

    return N17HostProcessor(processor, tokenizer)


def manifest_tokens(config: N17Config, tokenizer: Any) -> dict[str, int]:
    """The token ids the runtime needs (manifest ``tokens``)."""
    b = config.backbone
    return {"image_token_index": b.image_token_id, "image_start_token_id": b.vision_start_token_id,
            "image_end_token_id": b.vision_end_token_id, "pad_token_id": int(tokenizer.pad_token_id)}


def vision_declaration(config: N17Config) -> dict[str, Any]:
    """The manifest's ``vision`` section: per-size tables from the shipped learned table."""
    from ..grids import vision_declaration as declare

    return declare(config.backbone.vision.rope_theta)


def example_step(config: N17Config, slots: Any, *, start: str = "vision", seed: int = 0):
    """The example control step the export traces and validates every N1.7 graph on."""
    from .examples import n17_example_step

    return n17_example_step(config, slots, start=start, seed=seed)


def timed_reference(model: Any, inputs: Any, noise: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
    """The reference's control step split as bench reports it: seconds of vision, backbone (LLM) and
    action head (VLLN + VL self-attention + denoising), and the normalised actions (float32)."""
    import time

    import torch

    t = {name: torch.from_numpy(np.ascontiguousarray(getattr(inputs, name)))
         for name in ("input_ids", "attention_mask", "position_ids", "image_mask", "state", "embodiment_id")}
    start = time.perf_counter()
    pixels = torch.from_numpy(np.concatenate([np.asarray(p, np.float32) for p in inputs.pixel_values]))
    embeds, deepstack = model.vision(pixels, torch.tensor([list(g) for g in inputs.image_grids], dtype=torch.int64))
    seen = time.perf_counter()
    features = model.backbone_features(t["input_ids"], embeds, deepstack, t["position_ids"], t["attention_mask"])
    backboned = time.perf_counter()
    action = model.action_head.reference_denoise(features, t["image_mask"], t["attention_mask"], t["state"],
                                                 t["embodiment_id"], torch.from_numpy(noise))
    done = time.perf_counter()
    return {"vision": seen - start, "backbone": backboned - seen, "action head": done - backboned}, action.float().numpy()


def reference_case(model: Any, inputs: Any, noise: np.ndarray):
    """One reference control step of the N1.7 model on its host processor's inputs."""
    import torch

    from ....verification.reference_case import ReferenceCase
    from ..contract import DEEPSTACK

    t = {name: torch.from_numpy(np.ascontiguousarray(getattr(inputs, name)))
         for name in ("input_ids", "attention_mask", "position_ids", "image_mask", "state", "embodiment_id")}
    pixels = torch.from_numpy(np.concatenate([np.asarray(p, np.float32) for p in inputs.pixel_values]))
    grids = torch.tensor([list(g) for g in inputs.image_grids], dtype=torch.int64)
    x = torch.from_numpy(noise)
    with torch.no_grad():
        ref = model.reference_get_action(t["input_ids"], t["attention_mask"], t["position_ids"], pixels, grids,
                                         t["state"], t["embodiment_id"], x)
        head = model.action_head
        vl = head.encode_context(ref.backbone_features)
        state_features = head.encode_state(t["state"], t["embodiment_id"])
        steps = [noise]
        for k in range(head.config.num_inference_timesteps):
            x = head.reference_step(x, k, vl, state_features, t["image_mask"], t["attention_mask"], t["embodiment_id"])
            steps.append(x.float().numpy())
    rows = {"image_embeds": ref.image_embeds.numpy(), **{name: ref.deepstack[i].numpy() for i, name in enumerate(DEEPSTACK)}}
    return ReferenceCase(image_rows=rows, backbone_features=ref.backbone_features.numpy(), steps=steps,
                         action_pred=ref.action_pred.numpy())
