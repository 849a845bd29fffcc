"""Shape buckets and the buffer bookkeeping of one bucket.

The sequence length S is padded UP to a multiple of ``bucket`` by right padding (pad token, attention
mask False, image mask False) so engines and captured programs see few distinct shapes. This is exact:
the LLM is causal, so tokens on the right cannot change earlier positions, and the DiT masks padded keys.
Batch size and image layout are used as given; a bucket is keyed by (B, padded S, image sizes in order,
first stage).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BucketKey:
    """What makes a set of buffers and programs reusable."""

    batch: int
    seq: int
    image_sizes: tuple[tuple[int, int], ...]  # (h, w) of every image, in LLM order
    start: str = "vision"  # first stage of the (sub-)chain


def padded_length(length: int, bucket: int, limit: Sequence[int] | None = None) -> int:
    """``length`` rounded up to a multiple of ``bucket``, kept within the export's [min, max] of S."""
    padded = -(-length // bucket) * bucket
    if limit is not None:
        padded = max(min(padded, limit[-1]), limit[0], length)
    return padded


def pad_right(dst: np.ndarray, src: np.ndarray, fill: int | bool, axis: int = 1) -> None:
    """Copy ``src`` into the start of ``dst`` along the sequence ``axis`` (S → S') and fill the rest; no
    allocation beyond two views. [B, S] masks and ids pad axis 1, M-RoPE ids [3, B, S] axis 2."""
    seq, lead = src.shape[axis], (slice(None),) * axis
    np.copyto(dst[(*lead, slice(0, seq))], src, casting="same_kind")
    dst[(*lead, slice(seq, None))] = fill


def fill_image_index(image_mask: np.ndarray, out: np.ndarray) -> None:
    """Row of image_embeds [T, E] for every position: the k-th image token (row-major over [B, S], i.e.
    LLM order) reads row k; other positions read a valid row that the backbone ignores."""
    flat = out.reshape(-1)
    np.copyto(flat, image_mask.reshape(-1))
    np.add.accumulate(flat, out=flat)  # (np.cumsum with dtype= leaks a little per call in numpy 2)
    flat -= 1
    np.maximum(flat, 0, out=flat)


def row_runs(sizes: Sequence[tuple[int, int]], tokens: dict[tuple[int, int], int]) -> list[tuple[tuple[int, int], int, int, int]]:
    """How to assemble image_embeds [T, E] in LLM order from per-size vision outputs [n, t, E]:
    (size, source row, destination row, rows) runs, consecutive same-size images merged into one."""
    runs: list[list] = []
    taken = dict.fromkeys(tokens, 0)  # rows already used of each size's output
    row = 0
    for size in sizes:
        size = tuple(size)
        t = tokens[size]
        last = runs[-1] if runs else None
        if last is not None and last[0] == size and last[1] + last[3] == taken[size]:
            last[3] += t
        else:
            runs.append([size, taken[size], row, t])
        taken[size] += t
        row += t
    return [tuple(r) for r in runs]  # type: ignore[misc]
