"""Shape buckets and the helpers that fill padded inputs without allocating."""

from __future__ import annotations

import numpy as np
import pytest

from gr00t_trt.contract.dataflow import image_groups
from gr00t_trt.runtime.buffers import fill_image_index, pad_right, padded_length, row_runs


@pytest.mark.parametrize(("length", "bucket", "limit", "expected"), [
    (1, 32, None, 32), (32, 32, None, 32), (33, 32, None, 64), (33, 1, None, 33),
    (70, 32, [1, 32, 80], 80),  # capped at the export's max S
    (3, 4, [8, 8, 128], 8),  # raised to the export's min S
])
def test_padded_length(length, bucket, limit, expected):
    assert padded_length(length, bucket, limit) == expected


def test_pad_right_fills_the_tail():
    dst = np.full((2, 5), -1, np.int64)
    pad_right(dst, np.array([[1, 2, 3], [4, 5, 6]]), 9)
    assert dst.tolist() == [[1, 2, 3, 9, 9], [4, 5, 6, 9, 9]]


def test_image_index_counts_image_tokens_in_llm_order():
    mask = np.array([[0, 1, 1, 0, 1], [1, 0, 0, 1, 0]], bool)
    index = np.empty(mask.shape, np.int64)
    fill_image_index(mask, index)
    assert index[mask].tolist() == [0, 1, 2, 3, 4]
    assert index.min() >= 0 and index.max() <= 4  # every position reads a valid row


def test_row_runs_merge_consecutive_images_of_one_size():
    a, b = (4, 6), (8, 4)
    tokens = {a: 2, b: 4}
    assert image_groups([a, a, b, a]) == {a: [0, 1, 3], b: [2]}
    # (size, source row in that size's output, destination row in image_embeds, rows)
    assert row_runs([a, a, b, a], tokens) == [(a, 0, 0, 4), (b, 0, 4, 4), (a, 4, 8, 2)]
