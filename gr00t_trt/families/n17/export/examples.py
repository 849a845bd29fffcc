"""N1.7's example control step: the inputs every N1.7 graph is traced and validated on.

As N1.6's (``families/n16/export/examples.py``, on ``export/examples.py``): one example vision call on
images of a size distinct from every static dim, then two samples that each hold one of its images amid text. N1.7's own inputs: M-RoPE
position ids (text positions, the image's rows and columns on its tokens), left padding of the shorter
sample (the original's own) and two columns of runtime bucket padding on the right (``original_mask``
False there), so the VL self-attention's masking is part of what every export validates.
"""

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
    ExampleStep,
    example_step_weight,
)
from ..config import N17Config
from ..contract import CONTRACT

LEFT_PAD, BUCKET_PAD = 5, 2  # the second sample's left padding; the runtime's padding on the right


def n17_example_step(config: N17Config, slots: list[int] | None, *, start: str = "vision",
                     seed: int = 0) -> ExampleStep:
    """The inputs of one example N1.7 control step from ``start`` (vision or dit_context)."""
    rng = np.random.default_rng(seed)
    b = config.backbone
    step = ExampleStep(steps=config.num_inference_timesteps, image_token=b.image_token_id, contract=CONTRACT)
    side = b.vision.patch_size * b.vision.spatial_merge_size  # pixels per token side (32)
    if start == "vision":
        step.images = rng.integers(0, 256, size=(EXAMPLE_IMAGES, EXAMPLE_ROWS * side, EXAMPLE_COLS * side, 3),
                                   dtype=np.uint8)
    elif start != "dit_context":
        raise ExportError(f"an example step starts at vision or dit_context, not {start!r}")
    n_slots = len(slots) if slots else config.max_num_embodiments
    tokens = EXAMPLE_ROWS * EXAMPLE_COLS
    seq = EXAMPLE_TEXT + tokens + BUCKET_PAD
    first_image = 7
    input_ids = rng.integers(0, b.image_token_id - 2, size=(EXAMPLE_BATCH, seq), dtype=np.int64)
    input_ids[:, first_image:first_image + tokens] = b.image_token_id
    attention_mask = np.ones((EXAMPLE_BATCH, seq), dtype=bool)
    attention_mask[1, :LEFT_PAD] = False  # the shorter prompt, left padded by the original's processor
    attention_mask[:, seq - BUCKET_PAD:] = False
    input_ids[1, :LEFT_PAD] = 0
    input_ids[:, seq - BUCKET_PAD:] = 0
    original_mask = np.ones((EXAMPLE_BATCH, seq), dtype=bool)
    original_mask[:, seq - BUCKET_PAD:] = False  # the runtime's bucket padding: hidden from the VL self-attention
    image_mask = input_ids == b.image_token_id
    values = {
        "attention_mask": attention_mask, "image_mask": image_mask, "original_mask": original_mask,
        "state": rng.standard_normal((EXAMPLE_BATCH, 1, config.max_state_dim)).astype(np.float32),
        "embodiment_id": np.array([0, min(1, n_slots - 1)], dtype=np.int64),
        CARRY_START: rng.standard_normal((EXAMPLE_BATCH, config.action_horizon, config.max_action_dim)).astype(np.float32),
        "step_weight": example_step_weight(config.action_horizon),
    }
    if start == "dit_context":
        values["backbone_features"] = rng.standard_normal((EXAMPLE_BATCH, seq, config.backbone_embedding_dim)).astype(np.float32)
        step.values = values
        return step
    positions = np.ones((3, EXAMPLE_BATCH, seq), dtype=np.int64)  # padding positions 1, as the processor
    for row in range(EXAMPLE_BATCH):
        start_col = LEFT_PAD if row == 1 else 0
        text = np.arange(seq - BUCKET_PAD - start_col)
        positions[:, row, start_col:seq - BUCKET_PAD] = text
        grid_r, grid_c = np.divmod(np.arange(tokens), EXAMPLE_COLS)
        base = first_image - start_col
        positions[1, row, first_image:first_image + tokens] = base + grid_r
        positions[2, row, first_image:first_image + tokens] = base + grid_c
        positions[0, row, first_image:first_image + tokens] = base
    image_index = np.zeros((EXAMPLE_BATCH, seq), dtype=np.int64)
    image_index[image_mask] = np.arange(int(image_mask.sum()))
    values.update(input_ids=input_ids, image_index=image_index, position_ids=positions)
    step.values = values
    return step
