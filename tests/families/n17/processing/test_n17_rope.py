"""M-RoPE position ids (spec §3.6): the spec's example as a golden, agreement with transformers 5.24's
Qwen3-VL get_rope_index on several prompts, image sizes and left-padded batches, and bad input."""

from __future__ import annotations

import types

import numpy as np
import pytest

from gr00t_trt.base.errors import ObservationError
from gr00t_trt.families.n17.processing.images import grid_thw
from gr00t_trt.families.n17.processing.prompt import prompt_ids
from gr00t_trt.families.n17.processing.rope import mrope_position_ids, sample_positions


def test_spec_example(qwen_tokenizer):
    """One 256x256 image, "pick up the apple": t = 0,1,2,3, 4x64, 12,13,...; h and w over the image 4..11."""
    ids = prompt_ids(qwen_tokenizer, "pick up the apple", [(256, 256)])
    pos = sample_positions(ids, [grid_thw(256, 256)])
    assert pos.shape == (3, 75) and pos.dtype == np.int64
    assert pos[0].tolist() == [0, 1, 2, 3] + [4] * 64 + list(range(12, 19))
    assert (pos[:, :4] == np.arange(4)).all() and (pos[:, 68:] == np.arange(12, 19)).all()
    assert pos[1, 4:68].tolist() == [4 + r for r in range(8) for _ in range(8)]
    assert pos[2, 4:68].tolist() == [4 + c for _ in range(8) for c in range(8)]


def hf_rope_index(input_ids, attention_mask, grids):
    """transformers' Qwen3VLModel.get_rope_index, called without building a model (it reads only the
    merge size from the config and its own vision-position helper)."""
    torch = pytest.importorskip("torch")
    modeling = pytest.importorskip("transformers.models.qwen3_vl.modeling_qwen3_vl")
    model = modeling.Qwen3VLModel
    fake = types.SimpleNamespace(
        config=types.SimpleNamespace(vision_config=types.SimpleNamespace(spatial_merge_size=2)),
        get_vision_position_ids=lambda *a, **k: model.get_vision_position_ids(None, *a, **k),
    )
    ids = torch.from_numpy(input_ids)
    flat = [g for sample in grids for g in sample]
    position_ids, _ = model.get_rope_index(
        fake,
        input_ids=ids,
        mm_token_type_ids=(ids == 151655).int(),
        image_grid_thw=torch.tensor(flat, dtype=torch.long) if flat else None,
        attention_mask=torch.from_numpy(attention_mask.astype(np.int64)),
    )
    return position_ids.numpy()


@pytest.mark.parametrize(
    "samples",
    [
        [("pick up the apple", [(256, 256)])],
        [
            ("open the drawer", [(256, 256), (256, 256)]),
            ("x", [(256, 256), (256, 256)]),
        ],  # LIBERO, padded batch
        [("pick up the cup and put it in the sink", [(256, 448)] * 4), ("go", [(256, 448)] * 4)],  # DROID 2x2
        [
            ("stack", [(256, 352), (256, 320)]),
            ("stack the red block on the blue one", [(256, 352), (256, 320)]),
        ],
        [("portrait", [(352, 256)]), ("no images here", [])],
    ],
)
def test_matches_transformers(qwen_tokenizer, samples):
    sequences = [prompt_ids(qwen_tokenizer, text, sizes) for text, sizes in samples]
    grids = [[grid_thw(*s) for s in sizes] for _, sizes in samples]
    ids, mask = qwen_tokenizer.batch(sequences)
    # a runtime bucket: three more left-padding columns
    ids = np.concatenate([np.full((len(samples), 3), 151643), ids], axis=1)
    mask = np.concatenate([np.zeros((len(samples), 3), bool), mask], axis=1)
    ours = mrope_position_ids(ids, mask, grids)
    assert ours.shape == (3,) + ids.shape and ours.dtype == np.int64
    assert (ours[:, ~mask] == 1).all()  # transformers 4.57 (the reference) leaves 1 at padding
    np.testing.assert_array_equal(
        mrope_position_ids(ids, mask, grids, pad_position=0), hf_rope_index(ids, mask, grids)
    )


def test_bad_input(qwen_tokenizer):
    ids = prompt_ids(qwen_tokenizer, "go", [(256, 256)])
    with pytest.raises(
        ObservationError, match=r"image 0 of the prompt has 64 image tokens, expected 88 for its grid"
    ):
        sample_positions(ids, [grid_thw(256, 352)])
    with pytest.raises(
        ObservationError, match=r"the prompt has 1 image-token runs but 2 image grids were given"
    ):
        sample_positions(ids, [grid_thw(256, 256)] * 2)
    with pytest.raises(ObservationError, match=r"more image-token runs than the 0 image grids"):
        sample_positions(ids, [])
    with pytest.raises(
        ObservationError, match=r"input_ids and attention_mask must both be \[B, S\], got \[72\] and \[72\]"
    ):
        mrope_position_ids(ids, np.ones(len(ids), bool), [[]])
    with pytest.raises(ObservationError, match=r"grids must list the images of each of the 1 samples, got 2"):
        mrope_position_ids(ids[None], np.ones((1, len(ids)), bool), [[], []])
