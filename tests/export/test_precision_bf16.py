"""bf16 faithfulness of the reference: ``load_model(dtype=bf16)`` rounds the floating buffers (rotary
frequencies) as the original's ``model.to(dtype=torch.bfloat16)`` does, not only the parameters."""

from __future__ import annotations

import torch

from gr00t_trt.families.n16.checkpoint import load_model


def test_bf16_load_rounds_rotary_frequencies_like_the_original(tiny_checkpoint):
    fp32, _, _ = load_model(tiny_checkpoint, dtype=torch.float32)
    bf16, _, _ = load_model(tiny_checkpoint, dtype=torch.bfloat16)
    want = dict(fp32.named_buffers())
    got = dict(bf16.named_buffers())
    assert want and set(got) == set(want)
    for name, buffer in got.items():
        assert buffer.dtype == torch.bfloat16, name
        assert torch.equal(buffer, want[name].to(torch.bfloat16)), name
    rotary = bf16.backbone.llm.rotary_emb
    exact = fp32.backbone.llm.rotary_emb.inv_freq
    assert not torch.equal(rotary.inv_freq.float(), exact)  # the rounding is real at these frequencies

    # the model's own rotary embedding uses the rounded frequencies (upcast to fp32), as the original does
    positions = torch.arange(64)[None]  # [1, S]
    x = torch.zeros(1, 64, 1, dtype=torch.bfloat16)
    cos, _ = rotary(x, positions)
    angles = positions[0, :, None].float() * rotary.inv_freq.float()[None]  # [S, Dh/2]
    expected = (torch.cat([angles, angles], -1).cos() * rotary.attention_scaling).to(torch.bfloat16)
    assert torch.equal(cos[0], expected)


def test_fp32_load_keeps_fp32_buffers(tiny_checkpoint):
    model, _, _ = load_model(tiny_checkpoint, dtype=torch.float32)
    assert {b.dtype for b in model.buffers()} == {torch.float32}
