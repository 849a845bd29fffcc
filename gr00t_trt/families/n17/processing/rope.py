"""Qwen3-VL's 3-D M-RoPE position ids (t, h, w), computed on the host in numpy (spec §3.6 step 2).

Per sample, over its non-padded tokens: text tokens count up (p, p, p); a run of image tokens starting at
p0 takes t = p0, h = p0 + block row, w = p0 + block column over its merged grid (row-major), and the
text after it resumes at p0 + max(merged rows, merged columns). Padding positions get ``pad_position``:
1 in transformers 4.57 (the version the reference pins; 5.x writes 0) — they are masked out of the LLM's
attention, but the VL self-attention after it reads every position, so the value is kept as the original's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ....base.errors import ObservationError
from .images import MERGE_SIZE
from .tokenizer import EXPECTED_IDS, IMAGE_PAD

IMAGE_TOKEN_ID = EXPECTED_IDS[IMAGE_PAD]
#: what transformers 4.57's get_rope_index leaves at padded positions (it starts from torch.ones)
PAD_POSITION = 1


def sample_positions(
    ids: np.ndarray, grids: Sequence[tuple[int, int, int]], *, image_token_id: int = IMAGE_TOKEN_ID
) -> np.ndarray:
    """int64 [3, L] positions of one unpadded sample; ``grids`` are the (t, gh, gw) patch grids of its
    images in prompt order (each run of image tokens is one image)."""
    ids = np.asarray(ids)
    if len(ids) == 0:
        if grids:
            raise ObservationError(f"an empty prompt cannot hold the {len(grids)} images given")
        return np.zeros((3, 0), dtype=np.int64)
    is_image = ids == image_token_id
    # boundaries of runs of equal token type: [start, end) pairs
    change = np.flatnonzero(np.diff(is_image.astype(np.int8))) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(ids)]])
    out = np.empty((3, len(ids)), dtype=np.int64)
    pos, image = 0, 0
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        if not is_image[start]:
            out[:, start:end] = np.arange(pos, pos + end - start)
            pos += end - start
            continue
        if image >= len(grids):
            raise ObservationError(
                f"the prompt has more image-token runs than the {len(grids)} image grids given"
            )
        t, gh, gw = grids[image]
        mh, mw = gh // MERGE_SIZE, gw // MERGE_SIZE
        if t * mh * mw != end - start:
            raise ObservationError(
                f"image {image} of the prompt has {end - start} image tokens, expected {t * mh * mw} "
                f"for its grid (t={t}, gh={gh}, gw={gw})"
            )
        tt, hh, ww = np.meshgrid(np.arange(t), np.arange(mh), np.arange(mw), indexing="ij")
        out[0, start:end] = tt.ravel() + pos
        out[1, start:end] = hh.ravel() + pos
        out[2, start:end] = ww.ravel() + pos
        pos += max(mh, mw)
        image += 1
    if image != len(grids):
        raise ObservationError(
            f"the prompt has {image} image-token runs but {len(grids)} image grids were given"
        )
    return out


def mrope_position_ids(
    input_ids: np.ndarray,
    attention_mask: np.ndarray,
    grids: Sequence[Sequence[tuple[int, int, int]]],
    *,
    image_token_id: int = IMAGE_TOKEN_ID,
    pad_position: int = PAD_POSITION,
) -> np.ndarray:
    """int64 [3, B, S] position ids of a (left-)padded batch; ``grids[b]`` lists sample b's image grids.

    Works for any padding, so a runtime that pads further to a shape bucket calls it on the bucket-sized
    ids and mask."""
    input_ids = np.asarray(input_ids)
    attention_mask = np.asarray(attention_mask).astype(bool)
    if input_ids.ndim != 2 or attention_mask.shape != input_ids.shape:
        raise ObservationError(
            f"input_ids and attention_mask must both be [B, S], got {list(input_ids.shape)} and {list(attention_mask.shape)}"
        )
    if len(grids) != input_ids.shape[0]:
        raise ObservationError(
            f"grids must list the images of each of the {input_ids.shape[0]} samples, got {len(grids)}"
        )
    out = np.full((3,) + input_ids.shape, pad_position, dtype=np.int64)
    for b in range(input_ids.shape[0]):
        keep = attention_mask[b]
        out[:, b, keep] = sample_positions(input_ids[b, keep], grids[b], image_token_id=image_token_id)
    return out
