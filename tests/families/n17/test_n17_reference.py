"""The split N1.7 reference against an unsplit forward built from transformers' Qwen3-VL classes.

The unsplit side: transformers' own ``Qwen3VLForConditionalGeneration`` loaded with the checkpoint's
``backbone.model.*`` tensors (lm_head included, strict), run end to end on pixels and tokens, its
features read with a hook on the last decoder layer (pre-norm); the VL self-attention rebuilt from
``nn.MultiheadAttention``. fp32 throughout: relative L2 ≤ 1e-6.
"""

from __future__ import annotations

import json
import re

import pytest
import torch

from gr00t_trt.base.errors import CheckpointError
from gr00t_trt.families.n17 import layout
from gr00t_trt.families.n17.config import preset_config, token_ids
from gr00t_trt.families.n17.model import Gr00tN1d7, load_model, open_model, qwen3_vl_config
from gr00t_trt.families.n17.vision import VisionGraph
from gr00t_trt.model.checkpoint import INDEX_FILE

GRIDS = [(1, 10, 12), (1, 4, 6), (1, 10, 12)]  # two sizes, one repeated: 30, 6, 30 image tokens


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


@pytest.fixture(scope="module")
def checkpoint(n17_checkpoint):
    """The session's tiny checkpoint (seed 0, tests/families/n17/conftest.py); read only here."""
    return n17_checkpoint


@pytest.fixture(scope="module")
def loaded(checkpoint):
    model, config, _ = load_model(checkpoint, torch.float32)
    return model, config


@pytest.fixture(scope="module")
def hf_model(checkpoint, loaded):
    """transformers' full Qwen3-VL with the checkpoint's backbone tensors (strict: lm_head too)."""
    from safetensors.torch import load_file
    from transformers import Qwen3VLForConditionalGeneration

    _, config = loaded
    state = {}
    for shard in checkpoint.glob("*.safetensors"):
        state.update({k.removeprefix("backbone.model."): v.float() for k, v in load_file(shard).items()
                      if k.startswith("backbone.model.")})
    model = Qwen3VLForConditionalGeneration(qwen3_vl_config(config, "eager")).eval()
    model.load_state_dict(state, strict=True)
    return model


def prompt(config, text_lengths=(5, 3), pad: int = 0, seed: int = 0):
    """Token ids of the Qwen3-VL prompt shape (images first, then text), left-padded by ``pad``."""
    gen = torch.Generator().manual_seed(seed)
    ids = token_ids(1024)
    body = [1024 + 1, 77, 198 % 1024]  # <|im_start|> user \n (any ids: the model only tells images apart)
    for _, h, w in GRIDS:
        body += [ids["vision_start_token_id"]] + [ids["image_token_id"]] * (h * w // 4) + [ids["vision_end_token_id"]]
    body += torch.randint(0, 1024, (text_lengths[0],), generator=gen).tolist() + [1024 + 2, 198]
    input_ids = torch.tensor([[1024] * pad + body])
    mask = torch.tensor([[False] * pad + [True] * len(body)])
    return input_ids, mask


def pixels(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Patch rows with both temporal slices equal (a still image), and the grid rows."""
    gen = torch.Generator().manual_seed(seed)
    rows = sum(h * w for _, h, w in GRIDS)
    still = torch.rand(rows, 3, 1, 16, 16, generator=gen) * 2 - 1
    return still.expand(-1, -1, 2, -1, -1).reshape(rows, -1), torch.tensor(GRIDS)


def rope_ids(hf_model, input_ids, mask):
    """transformers' get_rope_index; padding positions set to 1 as in transformers 4.57 (the original's)."""
    image = input_ids == hf_model.config.image_token_id
    position_ids, _ = hf_model.model.get_rope_index(input_ids, image.int(), torch.tensor(GRIDS), attention_mask=mask.long())
    return torch.where(mask[None], position_ids, torch.ones_like(position_ids))


def hf_features(hf_model, input_ids, mask, position_ids, pixel_values):
    captured = {}
    layer = hf_model.model.language_model.layers[-1]
    handle = layer.register_forward_hook(lambda _m, _i, out: captured.setdefault("x", out))
    try:
        with torch.no_grad():
            hf_model.model(input_ids=input_ids, attention_mask=mask.long(), position_ids=position_ids,
                           pixel_values=pixel_values, image_grid_thw=torch.tensor(GRIDS))
    finally:
        handle.remove()
    return captured["x"]


def mha_vl_self_attention(model, x):
    """The VL self-attention from torch's own MultiheadAttention (independent of our Attention class)."""
    for block in model.action_head.vl_self_attention.transformer_blocks:
        a = block.attn1
        mha = torch.nn.MultiheadAttention(x.shape[-1], a.heads, batch_first=True)
        with torch.no_grad():
            mha.in_proj_weight.copy_(torch.cat([a.to_q.weight, a.to_k.weight, a.to_v.weight]))
            mha.in_proj_bias.copy_(torch.cat([a.to_q.bias, a.to_k.bias, a.to_v.bias]))
            mha.out_proj.weight.copy_(a.to_out[0].weight)
            mha.out_proj.bias.copy_(a.to_out[0].bias)
        h = block.norm1(x)
        x = x + mha(h, h, h, need_weights=False)[0]
        h = block.norm3(x)
        x = x + block.ff.net[2](torch.nn.functional.gelu(block.ff.net[0].proj(h), approximate="tanh"))
    return x


def test_split_reference_equals_transformers_unsplit_fp32(loaded, hf_model):
    model, config = loaded
    input_ids, mask = prompt(config)
    pixel_values, grids = pixels()
    position_ids = rope_ids(hf_model, input_ids, mask)
    gen = torch.Generator().manual_seed(1)
    state = torch.randn(1, 1, config.max_state_dim, generator=gen)
    noise = torch.randn(1, config.action_horizon, config.max_action_dim, generator=gen)
    embodiment = torch.tensor([24])
    out = model.reference_get_action(input_ids, mask, position_ids, pixel_values, grids, state, embodiment, noise)

    with torch.no_grad():
        vision = hf_model.model.get_image_features(pixel_values, grids)
        hf_embeds = torch.cat(vision.pooler_output)
        hf_deep = torch.stack([torch.cat(f) for f in vision.deepstack_features])
        features = hf_features(hf_model, input_ids, mask, position_ids, pixel_values)
        normed = hf_model.model.language_model.norm(features)
        vl = mha_vl_self_attention(model, model.action_head.vlln(features))
        image_mask = input_ids == config.backbone.image_token_id
        action = model.action_head.reference_denoise(features, image_mask, mask, state, embodiment, noise)

    assert rel_l2(out.image_embeds, hf_embeds) <= 1e-6
    assert rel_l2(out.deepstack, hf_deep) <= 1e-6
    assert rel_l2(out.backbone_features, features) <= 1e-6
    assert rel_l2(out.backbone_features, normed) > 0.1  # pre-norm features, not norm(·)
    assert rel_l2(out.vl_embeds, vl) <= 1e-6
    assert rel_l2(out.action_pred, action) <= 1e-6
    assert out.action_pred.std() > 0.1 and torch.isfinite(out.action_pred).all()


def test_left_padding_valid_rows_match_and_vl_attention_sees_the_padding(loaded, hf_model):
    model, config = loaded
    pixel_values, grids = pixels()
    ids1, mask1 = prompt(config)
    ids2, mask2 = prompt(config, pad=5)
    with torch.no_grad():
        embeds, deep = model.vision(pixel_values, grids)
        f1 = model.backbone_features(ids1, embeds, deep, rope_ids(hf_model, ids1, mask1), mask1)
        pos2 = rope_ids(hf_model, ids2, mask2)
        f2 = model.backbone_features(ids2, embeds, deep, pos2, mask2)
        hf2 = hf_features(hf_model, ids2, mask2, pos2, pixel_values)
        assert rel_l2(f2[:, 5:], f1) <= 1e-5  # padding changes nothing for real tokens
        assert rel_l2(f2[:, 5:], hf2[:, 5:]) <= 1e-6
        # the original's VL self-attention has no mask: the left padding changes the real rows ...
        assert rel_l2(model.dit_context(f2)[:, 5:], model.dit_context(f1)) > 1e-3
        # ... while a runtime's own (bucket) padding is hidden by passing the mask
        assert rel_l2(model.dit_context(f2, mask2)[:, 5:], model.dit_context(f1)) <= 1e-5


def test_loader_accounts_for_every_tensor(checkpoint, loaded, tmp_path):
    model, config = loaded
    shapes = layout.model_shapes(config)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == shapes
    assert not any(t.is_meta for t in model.state_dict().values())
    # a checkpoint missing one tensor is refused before anything is read
    import shutil

    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    shutil.copytree(checkpoint, broken)
    shard = sorted(broken.glob("*.safetensors"))[0]
    tensors = load_file(shard)
    dropped = sorted(tensors)[0]
    del tensors[dropped]
    save_file(tensors, shard)
    index = json.loads((broken / INDEX_FILE).read_text())
    del index["weight_map"][dropped]
    (broken / INDEX_FILE).write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match=rf"1 missing \({re.escape(dropped)}\)") as info:
        load_model(broken)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("preset", ["tiny", "small", "full"])
def test_model_state_dict_equals_the_layout(preset):
    config = preset_config(preset)
    with torch.device("meta"):
        model = Gr00tN1d7(config)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == layout.model_shapes(config)


def test_bf16_reference_runs_with_bf16_tables_and_stays_near_fp32(checkpoint, loaded, hf_model):
    model32, config = loaded
    model16, _, _ = load_model(checkpoint, torch.bfloat16)
    pos, cos, _ = VisionGraph(model16.qwen.visual, config).tables(10, 12)
    assert pos.dtype == cos.dtype == torch.bfloat16
    input_ids, mask = prompt(config)
    pixel_values, grids = pixels()
    position_ids = rope_ids(hf_model, input_ids, mask)
    gen = torch.Generator().manual_seed(1)
    state = torch.randn(1, 1, config.max_state_dim, generator=gen)
    noise = torch.randn(1, config.action_horizon, config.max_action_dim, generator=gen)
    args = (input_ids, mask, position_ids, pixel_values, grids, state, torch.tensor([24]), noise)
    out16, out32 = model16.reference_get_action(*args), model32.reference_get_action(*args)
    assert torch.isfinite(out16.action_pred).all()
    assert 0 < rel_l2(out16.backbone_features, out32.backbone_features) < 0.05
    assert 0 < rel_l2(out16.action_pred, out32.action_pred) < 0.1


def test_padding_rows_get_no_attention_as_in_flash_attention(loaded, hf_model):
    """Flash-attention 2 (the original's text attention) drops padded queries and returns 0 for them, so a
    padding row only goes through the residual MLPs; the VL self-attention later reads these rows."""
    model, config = loaded
    pixel_values, grids = pixels()
    ids, mask = prompt(config, pad=3)
    llm = model.qwen.language_model
    with torch.no_grad():
        embeds, deep = model.vision(pixel_values, grids)
        features = model.backbone_features(ids, embeds, deep, rope_ids(hf_model, ids, mask), mask)
        x = llm.embed_tokens(ids[:, :3])
        for layer in llm.layers:
            x = x + layer.mlp(layer.post_attention_layernorm(x))
    assert rel_l2(features[:, :3], x) <= 1e-6


def test_open_model_reads_one_graphs_weights_at_a_time(checkpoint, loaded):
    lazy, config, _ = open_model(checkpoint)
    assert layout.LM_HEAD_KEY not in lazy.keys and set(lazy.keys) == set(layout.model_shapes(config))
    keys = [k for k in lazy.keys if k.startswith(layout.VL_SELF_ATTENTION)]
    with lazy.loaded(keys) as model:
        weight = model.action_head.vl_self_attention.transformer_blocks[0].attn1.to_q.weight
        assert torch.equal(weight, loaded[0].action_head.vl_self_attention.transformer_blocks[0].attn1.to_q.weight)
        assert model.action_head.vlln.weight.is_meta  # not asked for: not read
    assert not weight.is_meta  # a wrapper built inside keeps its tensors ...
    assert model.action_head.vl_self_attention.transformer_blocks[0].attn1.to_q.weight.is_meta  # ... the model drops them
