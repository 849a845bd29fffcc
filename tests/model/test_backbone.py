"""EagleBackbone: vision path against transformers' SigLIP2, pixel-unshuffle order, token placement,
post-norm features, padding invariance, image independence, input validation (spec §3, §9)."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers.models.siglip2.image_processing_pil_siglip2 import convert_image_to_patches
from transformers.models.siglip2.modeling_siglip2 import Siglip2VisionEmbeddings

from gr00t_trt.base.errors import ObservationError
from gr00t_trt.families.n16.backbone import EagleBackbone
from gr00t_trt.model.synthetic import init_synthetic_


def images(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, h, w, 3), dtype=torch.uint8, generator=gen)


def transformers_vision(backbone: EagleBackbone, imgs: torch.Tensor) -> torch.Tensor:
    """SigLIP2 post-LN output computed the transformers way: its image processor's patch order and
    Siglip2VisionModel.forward with spatial_shapes and an all-ones pixel_attention_mask."""
    p = backbone.config.backbone.vision.patch_size
    pixels = (imgs.numpy().astype(np.float32) / 255.0 - 0.5) / 0.5  # [n, h, w, 3]
    patches = np.stack([convert_image_to_patches(x.transpose(2, 0, 1), p) for x in pixels])  # [n, P, 3p²]
    n, h, w, _ = imgs.shape
    out = backbone.vision(
        pixel_values=torch.from_numpy(patches),
        pixel_attention_mask=torch.ones(n, patches.shape[1], dtype=torch.long),
        spatial_shapes=torch.tensor([[h // p, w // p]] * n),
    )
    return out.last_hidden_state


@pytest.fixture(scope="module")
def backbone(tiny_model):
    return tiny_model.backbone


# ------------------------------------------------------------------------------------------ vision
@pytest.mark.parametrize("size", [(56, 56), (84, 112), (28, 56), (112, 28)])
@torch.no_grad()
def test_vision_matches_transformers_siglip2(backbone, size):
    """Patch flattening order and pos-emb resize (up- and down-sampling, non-square) as transformers."""
    imgs = images(2, *size)
    ours = backbone.vision_features(imgs)
    theirs = transformers_vision(backbone, imgs)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_patchify_order_is_row_col_channel(backbone):
    imgs = images(1, 28, 42)
    ours = backbone.patchify(imgs)[0].numpy()
    pixels = (imgs[0].numpy().astype(np.float32) - 127.5) / 127.5
    np.testing.assert_allclose(ours, convert_image_to_patches(pixels.transpose(2, 0, 1), 14), atol=1e-6)
    # the first patch vector starts with pixel (0,0) R,G,B then pixel (0,1): (row, col, channel)
    np.testing.assert_allclose(ours[0, :6], pixels[0, :2].reshape(-1), atol=1e-6)


@torch.no_grad()
def test_position_embedding_is_resized_with_antialias(backbone):
    table = backbone.vision.embeddings.position_embedding.weight  # 4×4 grid in the tiny preset
    grid = table.reshape(4, 4, -1)
    for gh, gw in [(2, 4), (6, 8), (4, 4)]:
        theirs = Siglip2VisionEmbeddings.resize_positional_embeddings(
            grid, torch.tensor([[gh, gw]]), gh * gw
        )[0]
        torch.testing.assert_close(backbone.position_embedding(gh, gw), theirs)
    torch.testing.assert_close(backbone.position_embedding(4, 4), table)  # same grid: identity
    no_aa = F.interpolate(grid.permute(2, 0, 1)[None], size=(2, 4), mode="bilinear", align_corners=False)
    assert not torch.allclose(backbone.position_embedding(2, 4), no_aa[0].flatten(1).T, atol=1e-3)


@torch.no_grad()
def test_raw_position_table_would_be_wrong(tiny_config):
    """With an 8×8 table and a 6×6 patch grid, taking the table's first 36 rows (no resize) gives
    different features: the resize matters (spec pitfall 9)."""
    vision = replace(tiny_config.backbone.vision, num_patches=64)
    config = replace(tiny_config, backbone=replace(tiny_config.backbone, vision=vision))
    bb = init_synthetic_(EagleBackbone(config), seed=3, prefix="backbone.")
    imgs = images(1, 84, 84)
    good = bb.vision_features(imgs)
    torch.testing.assert_close(good, transformers_vision(bb, imgs), rtol=1e-5, atol=1e-5)
    raw = copy.deepcopy(bb)
    raw.position_embedding = lambda gh, gw: bb.vision.embeddings.position_embedding.weight[: gh * gw]
    bad = raw.vision_features(imgs)
    assert (good - bad).norm() / good.norm() > 0.05


@torch.no_grad()
def test_pixel_unshuffle_channel_order(backbone):
    """Token (r, s) channel c·4 + 2i + j holds feature channel c of patch (2r+i, 2s+j) — torch
    pixel_unshuffle order, not InternVL's pixel_shuffle order (spec pitfall 8)."""
    imgs = images(1, 56, 84)  # 4×6 patches → 2×3 tokens
    feats = backbone.vision_features(imgs)[0].reshape(4, 6, -1)  # [gh, gw, D]
    d = feats.shape[-1]
    no_mlp = copy.deepcopy(backbone)
    no_mlp.model.mlp1 = torch.nn.Identity()
    tokens = no_mlp.encode_images(imgs)[0]  # [6, 4D]
    assert tokens.shape == (6, 4 * d)
    for r in range(2):
        for s in range(3):
            for i in range(2):
                for j in range(2):
                    channels = torch.arange(d) * 4 + 2 * i + j
                    torch.testing.assert_close(tokens[r * 3 + s, channels], feats[2 * r + i, 2 * s + j])
    # InternVL's pixel_shuffle(scale 0.5) on the [1, gh, gw, D] map orders the channels differently
    x = feats[None]  # [1, gh, gw, D]
    x = (
        x.reshape(1, 4, 3, 2 * d).permute(0, 2, 1, 3).reshape(1, 3, 2, 4 * d).permute(0, 2, 1, 3)
    )  # [1, 2, 3, 4D]
    assert not torch.allclose(x.reshape(6, 4 * d), tokens)


@torch.no_grad()
def test_images_never_attend_across_images(backbone):
    a, b = images(1, 56, 84, seed=1), images(1, 56, 84, seed=2)
    b2 = images(1, 56, 84, seed=3)
    first = backbone.encode_images(torch.cat([a, b]))[0]
    changed = backbone.encode_images(torch.cat([a, b2]))[0]
    alone = backbone.encode_images(a)[0]
    torch.testing.assert_close(first, changed, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(first, alone, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.zeros(1, 56, 56, 3, dtype=torch.float32), "dtype uint8"),
        (torch.zeros(1, 56, 56, 4, dtype=torch.uint8), r"shape \[n, h, w, 3\]"),
        (torch.zeros(56, 56, 3, dtype=torch.uint8), r"shape \[n, h, w, 3\]"),
        (torch.zeros(1, 56, 70, 3, dtype=torch.uint8), "multiples of 28"),
    ],
)
def test_bad_images_are_refused(backbone, bad, match):
    with pytest.raises(ObservationError, match=match):
        backbone.encode_images(bad)


# ------------------------------------------------------------------------------------------ LLM
def token_batch(config, lengths, seed=0, image_tokens=3, pad=None):
    """Left-padded ids/mask with ``image_tokens`` <IMG_CONTEXT> ids in each row."""
    gen = torch.Generator().manual_seed(seed)
    image_id = config.backbone.image_token_index
    seq = max(lengths)
    ids = torch.full((len(lengths), seq), pad if pad is not None else image_id - 26, dtype=torch.int64)
    mask = torch.zeros(len(lengths), seq, dtype=torch.bool)
    for b, n in enumerate(lengths):
        row = torch.randint(0, image_id - 26, (n,), generator=gen)
        row[2 : 2 + image_tokens] = image_id
        ids[b, seq - n :] = row
        mask[b, seq - n :] = True
    return ids, mask


@torch.no_grad()
def test_image_rows_placed_in_row_major_order(backbone, tiny_config):
    ids, _ = token_batch(tiny_config, [9, 7], image_tokens=3)
    e = tiny_config.backbone.text.hidden_size
    rows = torch.arange(6 * e, dtype=torch.float32).reshape(6, e)
    embeds = backbone.embed_inputs(ids, rows)
    where = (ids == tiny_config.backbone.image_token_index).nonzero().tolist()
    assert [tuple(p) for p in where] == [(0, 2), (0, 3), (0, 4), (1, 4), (1, 5), (1, 6)]
    for k, (b, s) in enumerate(where):
        torch.testing.assert_close(embeds[b, s], rows[k])
    text = ids != tiny_config.backbone.image_token_index
    torch.testing.assert_close(embeds[text], backbone.llm.embed_tokens(ids)[text])


def test_image_row_count_must_match(backbone, tiny_config):
    ids, mask = token_batch(tiny_config, [9], image_tokens=3)
    with pytest.raises(ObservationError, match=r"image_embeds: expected \[3, 64\]"):
        backbone(ids, torch.zeros(4, 64), mask)


@torch.no_grad()
def test_features_are_post_final_norm(backbone, tiny_config):
    ids, mask = token_batch(tiny_config, [9], image_tokens=3)
    seen = {}
    handle = backbone.llm.norm.register_forward_hook(lambda m, args, out: seen.update(pre=args[0]))
    try:
        feats = backbone(ids, torch.randn(3, 64), mask)
    finally:
        handle.remove()
    torch.testing.assert_close(feats, backbone.llm.norm(seen["pre"]))
    rms = (feats / backbone.llm.norm.weight).pow(2).mean(-1).sqrt()
    torch.testing.assert_close(rms, torch.ones_like(rms), rtol=1e-3, atol=1e-3)


@torch.no_grad()
def test_left_padding_does_not_change_real_positions(backbone, tiny_config):
    ids, mask = token_batch(tiny_config, [12, 7], seed=1, image_tokens=2)
    image_embeds = torch.randn(4, 64, generator=torch.Generator().manual_seed(5))
    batch = backbone(ids, image_embeds, mask)
    alone_a = backbone(ids[:1], image_embeds[:2], mask[:1])
    alone_b = backbone(ids[1:, 5:], image_embeds[2:], mask[1:, 5:])  # unpadded second row
    torch.testing.assert_close(batch[0], alone_a[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(batch[1, 5:], alone_b[0], rtol=1e-5, atol=1e-5)
    assert torch.isfinite(batch).all()  # padding rows too


@torch.no_grad()
def test_llm_matches_transformers_mask_path(backbone, tiny_config):
    """Our causal+padding bias equals transformers' own 2-D mask handling on the real positions."""
    ids, mask = token_batch(tiny_config, [10, 6], seed=2, image_tokens=2)
    image_embeds = torch.randn(4, 64)
    ours = backbone(ids, image_embeds, mask)
    embeds = backbone.embed_inputs(ids, image_embeds)
    theirs = backbone.llm(inputs_embeds=embeds, attention_mask=mask.long()).last_hidden_state
    torch.testing.assert_close(ours[mask], theirs[mask], rtol=1e-5, atol=1e-5)


def test_bad_tokens_are_refused(backbone, tiny_config):
    ids, mask = token_batch(tiny_config, [9], image_tokens=0)
    with pytest.raises(ObservationError, match="attention_mask: expected dtype bool"):
        backbone(ids, torch.zeros(0, 64), mask.long())
    with pytest.raises(ObservationError, match="input_ids: expected int64"):
        backbone(ids.int(), torch.zeros(0, 64), mask)
    with pytest.raises(ObservationError, match=r"input_ids: expected token ids in \[0, 1061\)"):
        backbone(ids + 5000, torch.zeros(0, 64), mask)


@torch.no_grad()
def test_eager_attention_matches_sdpa(backbone, tiny_config):
    eager = init_synthetic_(EagleBackbone(tiny_config, attn_implementation="eager"), seed=0, prefix="backbone.")
    ids, mask = token_batch(tiny_config, [12, 9], seed=4, image_tokens=6)
    imgs = images(2, 56, 84)
    a = backbone(ids, backbone.encode_images(imgs).reshape(-1, 64), mask)
    b = eager(ids, eager.encode_images(imgs).reshape(-1, 64), mask)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="flash_attention_2"):
        EagleBackbone(tiny_config, attn_implementation="flash_attention_2")
