"""N1.6's example control step: one image amid text per sample, the second sample right-padded, run
through the graph wrappers along N1.6's dataflow (``export.examples.ExampleStep``)."""

from __future__ import annotations

import numpy as np

from ....base.errors import ExportError
from ....contract.dataflow import CARRY_START
from ....export.examples import (
    EXAMPLE_BATCH,
    EXAMPLE_COLS,
    EXAMPLE_IMAGES,
    EXAMPLE_ROWS,
    EXAMPLE_TEXT,
    RIGHT_PAD,
    ExampleStep,
    example_step_weight,
)
from ..contract import CONTRACT


def example_step(config, slots: list[int] | None, *, start: str = "vision", seed: int = 0) -> ExampleStep:
    """The inputs of one example control step from ``start`` (vision, or dit_context: the action head alone
    on example backbone features); ``ExampleStep.run`` then runs it through the graphs piece by piece."""
    rng = np.random.default_rng(seed)
    step = ExampleStep(steps=config.num_inference_timesteps, image_token=config.backbone.image_token_index,
                       contract=CONTRACT)
    side = config.backbone.vision.patch_size * config.backbone.unshuffle_factor  # pixels per token side
    size = (EXAMPLE_ROWS * side, EXAMPLE_COLS * side)
    if start == "vision":
        step.images = rng.integers(0, 256, size=(EXAMPLE_IMAGES, *size, 3), dtype=np.uint8)
    elif start != "dit_context":
        raise ExportError(f"an example step starts at vision or dit_context, not {start!r}")

    n_slots = len(slots) if slots else config.max_num_embodiments
    head_values = {
        "state": rng.standard_normal((EXAMPLE_BATCH, 1, config.max_state_dim)).astype(np.float32),
        "embodiment_id": np.array([0, min(1, n_slots - 1)], dtype=np.int64),
        CARRY_START: rng.standard_normal(
            (EXAMPLE_BATCH, config.action_horizon, config.max_action_dim)).astype(np.float32),
        "step_weight": example_step_weight(config.action_horizon),
    }
    if start == "dit_context":  # the action head alone: example backbone features
        from ....export.action_head_graphs import example_masks

        image_mask, attention_mask = (m.numpy() for m in example_masks(EXAMPLE_BATCH, EXAMPLE_TEXT))
        features = rng.standard_normal((EXAMPLE_BATCH, EXAMPLE_TEXT, config.backbone_embedding_dim)).astype(np.float32)
        step.values = {"backbone_features": features, "image_mask": image_mask, "attention_mask": attention_mask,
                       **head_values}
        return step

    # the rest of the chain: each sample holds one example image amid text, sample 2 right-padded
    tokens_per_image = EXAMPLE_ROWS * EXAMPLE_COLS
    seq = EXAMPLE_TEXT + tokens_per_image
    image_token = config.backbone.image_token_index
    input_ids = rng.integers(0, image_token, size=(EXAMPLE_BATCH, seq), dtype=np.int64)
    first_image = 7
    input_ids[:, first_image : first_image + tokens_per_image] = image_token
    attention_mask = np.ones((EXAMPLE_BATCH, seq), dtype=bool)
    attention_mask[1, -RIGHT_PAD:] = False
    image_mask = input_ids == image_token
    image_index = np.zeros((EXAMPLE_BATCH, seq), dtype=np.int64)
    image_index[image_mask] = np.arange(int(image_mask.sum()))
    step.values = {
        "input_ids": input_ids,
        "image_index": image_index,
        "attention_mask": attention_mask,
        "image_mask": image_mask,
        **head_values,
    }  # + image_embeds once the vision graphs ran
    assert set(CONTRACT.external_inputs("backbone")) - {"image_embeds"} <= set(step.values), "the example lacks a declared input"
    return step
