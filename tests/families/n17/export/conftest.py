"""Shared inputs of the N1.7 graph-wrapper tests: a tiny synthetic model and prompts shaped like the
original's (images first, Qwen3-VL template tokens, left padding), with the host's M-RoPE ids."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gr00t_trt.families.n17.config import preset_config
from gr00t_trt.families.n17.processing.images import normalize_patches, patch_rows
from gr00t_trt.families.n17.processing.rope import mrope_position_ids
from gr00t_trt.families.n17.synthetic import synthetic_model

TINY = preset_config("tiny")
PAD_ID = TINY.backbone.text.vocab_size - 26  # <|endoftext|>: the first token after the base vocabulary


def rel_l2(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope="session")
def tiny_model():
    return synthetic_model(TINY, seed=0)


def images(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, height, width, 3), dtype=np.uint8)


def host_pixels(batch: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The host's patch rows of a batch of images (the reference vision's input) and their grids."""
    rows = [normalize_patches(patch_rows(image)) for image in batch]
    grid = (1, batch.shape[1] // 16, batch.shape[2] // 16)
    return torch.from_numpy(np.concatenate(rows)), torch.tensor([grid] * len(batch))


def prompts(config, text_lengths, images_per_sample: int, tokens_per_image: int, grid, seed: int = 0):
    """A left-padded batch: per sample <|im_start|> user \\n, its images (vision_start, image_pad × N,
    vision_end), ``text_lengths[b]`` random text tokens, <|im_end|> \\n → numpy input_ids, attention_mask,
    position_ids (host M-RoPE), image_index (row of the image tokens, 0 elsewhere), image_mask."""
    rng = np.random.default_rng(seed)
    ids = config.backbone
    rows = []
    for length in text_lengths:
        body = [PAD_ID + 1, 77, 198]
        for _ in range(images_per_sample):
            body += [ids.vision_start_token_id] + [ids.image_token_id] * tokens_per_image + [ids.vision_end_token_id]
        body += rng.integers(0, PAD_ID, size=length).tolist() + [PAD_ID + 2, 198]
        rows.append(body)
    seq = max(len(r) for r in rows)
    input_ids = np.full((len(rows), seq), PAD_ID, dtype=np.int64)
    mask = np.zeros((len(rows), seq), dtype=bool)
    for b, row in enumerate(rows):
        input_ids[b, seq - len(row):], mask[b, seq - len(row):] = row, True
    position_ids = mrope_position_ids(input_ids, mask, [[grid] * images_per_sample] * len(rows),
                                      image_token_id=ids.image_token_id)
    image_mask = input_ids == ids.image_token_id
    image_index = np.zeros_like(input_ids)
    image_index[image_mask] = np.arange(int(image_mask.sum()))
    return input_ids, mask, position_ids, image_index, image_mask
