"""The original's bf16 RoPE rounding (spec §3.9), as transformers 4.57.3 computes it after the policy's
``model.to(bfloat16)`` casts the non-persistent inv_freq buffers."""

from __future__ import annotations

import torch

from gr00t_trt.families.n17.backbone import mrope_tables
from gr00t_trt.families.n17.config import preset_config
from gr00t_trt.families.n17.model import qwen3_vl_config
from gr00t_trt.families.n17.vision import position_table, rotary_table


def test_text_mrope_equals_transformers_rotary_after_a_bf16_cast():
    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLTextRotaryEmbedding

    config = preset_config("full")
    t = config.backbone.text
    hf = Qwen3VLTextRotaryEmbedding(qwen3_vl_config(config).text_config)
    gen = torch.Generator().manual_seed(0)
    position_ids = torch.randint(0, 600, (3, 2, 50), generator=gen)
    for dtype in (torch.float32, torch.bfloat16):
        rotary = hf.to(dtype)  # what the policy's model.to(bf16) does to the buffer
        cos_ref, sin_ref = rotary(torch.zeros(1, dtype=dtype), position_ids)
        cos, sin = mrope_tables(position_ids, t.head_dim, t.rope_theta, t.mrope_section, dtype)
        assert cos.dtype == dtype and torch.equal(cos, cos_ref) and torch.equal(sin, sin_ref)
    exact, _ = mrope_tables(position_ids, t.head_dim, t.rope_theta, t.mrope_section, torch.float32)
    rounded, _ = mrope_tables(position_ids, t.head_dim, t.rope_theta, t.mrope_section, torch.bfloat16)
    assert (exact - rounded.float()).abs().max() > 0.1  # the bf16 inv_freq moves far angles visibly


def test_vision_rotary_is_computed_in_bf16_like_transformers_457():
    v = preset_config("full").backbone.vision
    cos, sin = rotary_table(v.head_dim, v.rope_theta, 16, 28, 2, torch.bfloat16)
    # transformers 4.57.3: arange and inv_freq in the buffer's dtype, outer product and cos/sin in it too
    inv_freq = (1.0 / (v.rope_theta ** (torch.arange(0, 32, 2, dtype=torch.float) / 32))).to(torch.bfloat16)
    table = torch.outer(torch.arange(28, dtype=torch.bfloat16), inv_freq)
    row, col = 2 * 3 + 1, 2 * 5 + 0  # patch 2 of block (3, 5) in merge-block order
    index = (3 * 14 + 5) * 4 + 2
    angles = torch.cat([table[row], table[col]])
    assert torch.equal(cos[index], torch.cat([angles, angles]).cos())
    assert torch.equal(sin[index], torch.cat([angles, angles]).sin())
    exact, _ = rotary_table(v.head_dim, v.rope_theta, 16, 28, 2, torch.float32)
    assert (exact - cos.float()).abs().max() > 1e-2


def test_position_table_weights_are_in_the_table_dtype():
    gen = torch.Generator().manual_seed(0)
    table = torch.randn(2304, 8, generator=gen).to(torch.bfloat16)
    pos = position_table(table, 16, 16, 2)
    # transformers 4.57.3: weights cast to bf16, four bf16 products summed in corner order
    r = torch.linspace(0, 47, 16)
    r0, dr = r.int(), r - r.int()
    r1 = (r0 + 1).clip(max=47)
    i, j = 5, 9  # raster patch (5, 9) is merge-block index ((2·8 + 4)·4 + 1·2 + 1)
    w = [((1 - dr[i]) * (1 - dr[j])), ((1 - dr[i]) * dr[j]), (dr[i] * (1 - dr[j])), (dr[i] * dr[j])]
    rows = [r0[i] * 48 + r0[j], r0[i] * 48 + r1[j], r1[i] * 48 + r0[j], r1[i] * 48 + r1[j]]
    expected = sum((table[k] * wk.to(torch.bfloat16) for k, wk in zip(rows[1:], w[1:], strict=True)),
                   table[rows[0]] * w[0].to(torch.bfloat16))
    assert torch.equal(pos[(2 * 8 + 4) * 4 + 3], expected)
