"""Gr00tActionHead: checkpoint layout, parameter counts, and every action-head pitfall of spec §9.

Each pitfall test compares against an independent few-line evaluation of the spec's formula (or checks a
perturbation), so doing it the other way (transposed W, swapped sin/cos, wrong divisor, swapped
scale/shift, wrong mask, float timesteps, position embedding on the state token, wrong slice) fails.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from gr00t_trt.base.errors import EmbodimentError, ObservationError
from gr00t_trt.families.n16.presets import preset_config
from gr00t_trt.model.action_head import (
    CategorySpecificLinear,
    Gr00tActionHead,
    action_time_sinusoid,
    cross_block_indices,
    dit_block_kinds,
    dit_time_sinusoid,
)

TINY = preset_config("tiny")


def make_head(config=TINY, seed: int = 0) -> Gr00tActionHead:
    """Random head with non-trivial VLLN affine (the default init covers every other weight)."""
    torch.manual_seed(seed)
    head = Gr00tActionHead(config).eval()
    with torch.no_grad():
        head.vlln.weight.copy_(1 + 0.2 * torch.randn_like(head.vlln.weight))
        head.vlln.bias.copy_(0.2 * torch.randn_like(head.vlln.bias))
    return head


def make_inputs(config=TINY, batch: int = 2, seq: int = 18, seed: int = 1):
    """(backbone_features, image_mask, attention_mask, state, embodiment_id, noise) with text positions
    0..5, image positions 6..11, text 12.., and sample b left-padded by b positions."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(batch, seq, config.backbone_embedding_dim, generator=g)
    positions = torch.arange(seq)
    image_mask = ((positions >= 6) & (positions < 12)).expand(batch, seq).clone()
    attention_mask = positions[None, :] >= torch.arange(batch)[:, None]
    state = torch.randn(batch, 1, config.max_state_dim, generator=g)
    embodiment_id = (torch.arange(batch) * 5 + 3) % config.max_num_embodiments
    noise = torch.randn(batch, config.action_horizon, config.max_action_dim, generator=g)
    return features, image_mask, attention_mask, state, embodiment_id, noise


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


# ------------------------------------------------------------------------------------------ layout
def expected_layout(c) -> dict[str, tuple[int, ...]]:
    """Spec §2.4, written out independently of the module code."""
    E, C, Ds, Da, Hd = (
        c.max_num_embodiments,
        c.input_embedding_dim,
        c.max_state_dim,
        c.max_action_dim,
        c.hidden_size,
    )
    keys = {
        "vlln.weight": (c.backbone_embedding_dim,),
        "vlln.bias": (c.backbone_embedding_dim,),
        "state_encoder.layer1.W": (E, Ds, Hd),
        "state_encoder.layer1.b": (E, Hd),
        "state_encoder.layer2.W": (E, Hd, C),
        "state_encoder.layer2.b": (E, C),
        "action_encoder.W1.W": (E, Da, C),
        "action_encoder.W1.b": (E, C),
        "action_encoder.W2.W": (E, 2 * C, C),
        "action_encoder.W2.b": (E, C),
        "action_encoder.W3.W": (E, C, C),
        "action_encoder.W3.b": (E, C),
        "action_decoder.layer1.W": (E, Hd, Hd),
        "action_decoder.layer1.b": (E, Hd),
        "action_decoder.layer2.W": (E, Hd, Da),
        "action_decoder.layer2.b": (E, Da),
        "position_embedding.weight": (c.max_seq_len, C),
        "model.timestep_encoder.timestep_embedder.linear_1.weight": (C, 256),
        "model.timestep_encoder.timestep_embedder.linear_1.bias": (C,),
        "model.timestep_encoder.timestep_embedder.linear_2.weight": (C, C),
        "model.timestep_encoder.timestep_embedder.linear_2.bias": (C,),
        "model.proj_out_1.weight": (2 * C, C),
        "model.proj_out_1.bias": (2 * C,),
        "model.proj_out_2.weight": (c.dit.output_dim, C),
        "model.proj_out_2.bias": (c.dit.output_dim,),
    }
    for i in range(c.dit.num_layers):
        p = f"model.transformer_blocks.{i}."
        kv_in = c.backbone_embedding_dim if i % 2 == 0 else C
        keys |= {
            p + "norm1.linear.weight": (2 * C, C),
            p + "norm1.linear.bias": (2 * C,),
            p + "attn1.to_q.weight": (C, C),
            p + "attn1.to_q.bias": (C,),
            p + "attn1.to_k.weight": (C, kv_in),
            p + "attn1.to_k.bias": (C,),
            p + "attn1.to_v.weight": (C, kv_in),
            p + "attn1.to_v.bias": (C,),
            p + "attn1.to_out.0.weight": (C, C),
            p + "attn1.to_out.0.bias": (C,),
            p + "ff.net.0.proj.weight": (4 * C, C),
            p + "ff.net.0.proj.bias": (4 * C,),
            p + "ff.net.2.weight": (C, 4 * C),
            p + "ff.net.2.bias": (C,),
        }
    return keys


@pytest.mark.parametrize("preset", ["tiny", "small", "full"])
def test_state_dict_keys_and_shapes_match_the_checkpoint(preset):
    config = preset_config(preset)
    with torch.device("meta"):
        head = Gr00tActionHead(config)
    actual = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    expected = expected_layout(config)
    assert sorted(actual) == sorted(expected)
    assert actual == expected


def test_full_parameter_counts_match_spec_section_6():
    with torch.device("meta"):
        head = Gr00tActionHead(preset_config("full"))
    sd = head.state_dict()

    def count(prefix: str = "") -> int:
        return sum(v.numel() for k, v in sd.items() if k.startswith(prefix))

    assert len(sd) == 473
    assert count() == 1_418_624_000
    assert count("model.") == 1_091_722_240
    assert count("model.timestep_encoder.") == 2_755_584
    assert count("model.transformer_blocks.0.") == 34_619_904  # cross-attention block
    assert count("model.transformer_blocks.1.") == 33_047_040  # self-attention block
    assert count("state_encoder.") == 54_607_872
    assert count("action_encoder.") == 232_931_328
    assert count("action_decoder.") == 37_785_600
    assert count("position_embedding.") == 1_572_864
    assert count("vlln.") == 4_096


def test_no_mask_token_even_with_state_dropout():
    """Training-only; the checkpoint loader skips ``action_head.mask_token`` when present."""
    with torch.device("meta"):
        head = Gr00tActionHead(dataclasses.replace(TINY, state_dropout_prob=0.1))
    assert "mask_token" not in head.state_dict()


def test_block_schedule_of_the_full_model():
    kinds = dit_block_kinds(preset_config("full"))
    assert len(kinds) == 32
    assert [i for i, k in enumerate(kinds) if k == "text"] == list(range(0, 32, 4))
    assert [i for i, k in enumerate(kinds) if k == "image"] == list(range(2, 32, 4))
    assert [i for i, k in enumerate(kinds) if k == "self"] == list(range(1, 32, 2))
    assert cross_block_indices(preset_config("full")) == list(range(0, 32, 2))


# ------------------------------------------------------------------------------------------ pitfall 1
def test_category_specific_linear_multiplies_by_W_without_transpose():
    torch.manual_seed(0)
    layer = CategorySpecificLinear(4, 8, 8)  # square, so a transposed W would run silently
    x = torch.randn(3, 5, 8)
    ids = torch.tensor([2, 0, 3])
    expected = torch.stack([x[b] @ layer.W[ids[b]] + layer.b[ids[b]] for b in range(3)])
    transposed = torch.stack([x[b] @ layer.W[ids[b]].T + layer.b[ids[b]] for b in range(3)])
    with torch.no_grad():
        out = layer(x, ids)
    torch.testing.assert_close(out, expected)
    assert (out - transposed).abs().max() > 0.1


def test_category_specific_layers_select_rows_by_embodiment():
    torch.manual_seed(0)
    layer = CategorySpecificLinear(4, 6, 7)
    x = torch.randn(1, 2, 6).expand(2, 2, 6)
    with torch.no_grad():
        out = layer(x, torch.tensor([1, 3]))
        sliced = layer.select([3, 1])(x, torch.tensor([1, 0]))
    assert (out[0] - out[1]).abs().max() > 0.1
    torch.testing.assert_close(sliced, out)


# ------------------------------------------------------------------------------------------ pitfall 2
def _independent_action_code(tau: int, dim: int) -> torch.Tensor:
    half = dim // 2
    sines = [math.sin(tau * 10000 ** (-k / half)) for k in range(half)]
    cosines = [math.cos(tau * 10000 ** (-k / half)) for k in range(half)]
    return torch.tensor(sines + cosines, dtype=torch.float64)


def _independent_dit_code(tau: int, dim: int = 256) -> torch.Tensor:
    half = dim // 2
    cosines = [math.cos(tau * math.exp(-math.log(10000) * k / (half - 1))) for k in range(half)]
    sines = [math.sin(tau * math.exp(-math.log(10000) * k / (half - 1))) for k in range(half)]
    return torch.tensor(cosines + sines, dtype=torch.float64)


@pytest.mark.parametrize("dim", [32, 1536])
def test_action_encoder_sinusoid_is_sin_first_with_divisor_half_dim(dim):
    taus = [0, 250, 500, 750]
    code = action_time_sinusoid(torch.tensor(taus), dim).double()  # [4, dim]
    for row, tau in zip(code, taus, strict=True):
        torch.testing.assert_close(row, _independent_action_code(tau, dim), atol=2e-4, rtol=0)
    # the formula discriminates: cos-first or divisor half−1 would be far off
    assert (code[1] - torch.cat([code[1, dim // 2 :], code[1, : dim // 2]])).abs().max() > 0.5
    wrong_divisor = [math.sin(250 * 10000 ** (-k / (dim // 2 - 1))) for k in range(dim // 2)]
    assert (code[1, : dim // 2] - torch.tensor(wrong_divisor, dtype=torch.float64)).abs().max() > 0.1


def test_dit_timestep_sinusoid_is_cos_first_with_divisor_127():
    taus = [0, 250, 500, 750]
    code = dit_time_sinusoid(torch.tensor(taus), 256).double()  # [4, 256]
    for row, tau in zip(code, taus, strict=True):
        torch.testing.assert_close(row, _independent_dit_code(tau), atol=2e-4, rtol=0)
    assert torch.equal(code[0, :128], torch.ones(128, dtype=torch.float64))  # cos(0) first
    wrong_divisor = [math.cos(250 * 10000 ** (-k / 128)) for k in range(128)]
    assert (code[1, :128] - torch.tensor(wrong_divisor, dtype=torch.float64)).abs().max() > 0.1


def test_action_encoder_concatenates_action_embedding_then_sinusoid():
    head = make_head()
    enc = head.action_encoder
    x = torch.randn(2, TINY.action_horizon, TINY.max_action_dim)
    ids = torch.tensor([4, 9])
    tau = torch.tensor([500, 500])
    C = TINY.input_embedding_dim
    code = _independent_action_code(500, C).float()  # [C]
    expected = []
    for b in range(2):
        e = ids[b]
        a = x[b] @ enc.W1.W[e] + enc.W1.b[e]  # [H, C]
        z = torch.cat([a, code.expand(TINY.action_horizon, C)], dim=-1) @ enc.W2.W[e] + enc.W2.b[e]
        expected.append((z * torch.sigmoid(z)) @ enc.W3.W[e] + enc.W3.b[e])
    with torch.no_grad():
        out = enc(x, tau, ids)
    torch.testing.assert_close(out, torch.stack(expected), atol=1e-4, rtol=1e-4)


def test_timestep_encoder_is_mlp_of_the_cos_first_code():
    head = make_head()
    emb = head.model.timestep_encoder.timestep_embedder
    code = _independent_dit_code(750).float()[None]  # [1, 256]
    expected = emb.linear_2(F.silu(emb.linear_1(code)))
    with torch.no_grad():
        out = head.model.timestep_encoder(torch.tensor([750]))
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------------------------------ pitfall 3
def _plain_layer_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps)


def test_adaln_splits_scale_first_then_shift_with_eps_1e5():
    head = make_head()
    norm1 = head.model.transformer_blocks[0].norm1
    C = TINY.input_embedding_dim
    scale, shift = torch.randn(C), torch.randn(C)
    with torch.no_grad():
        norm1.linear.weight.zero_()
        norm1.linear.bias.copy_(torch.cat([scale, shift]))
        x = 3e-3 * torch.randn(2, 5, C)  # variance ≈ eps: the eps value matters
        out = norm1(x, torch.randn(2, C))
    torch.testing.assert_close(out, _plain_layer_norm(x, 1e-5) * (1 + scale) + shift, atol=1e-5, rtol=1e-5)
    swapped = _plain_layer_norm(x, 1e-5) * (1 + shift) + scale
    assert (out - swapped).abs().max() > 0.1
    assert (out - (_plain_layer_norm(x, 1e-6) * (1 + scale) + shift)).abs().max() > 0.05


def test_output_layer_splits_shift_first_then_scale_with_eps_1e6():
    head = make_head()
    dit = head.model
    C = TINY.input_embedding_dim
    assert TINY.dit.output_dim == C  # lets proj_out_2 be the identity below
    shift, scale = torch.randn(C), torch.randn(C)
    with torch.no_grad():
        dit.proj_out_1.weight.zero_()
        dit.proj_out_1.bias.copy_(torch.cat([shift, scale]))
        dit.proj_out_2.weight.copy_(torch.eye(C))
        dit.proj_out_2.bias.zero_()
        x = 2e-3 * torch.randn(2, 5, C)
        out = dit.output(x, torch.randn(2, C))
    torch.testing.assert_close(out, _plain_layer_norm(x, 1e-6) * (1 + scale) + shift, atol=1e-5, rtol=1e-5)
    assert (out - (_plain_layer_norm(x, 1e-6) * (1 + shift) + scale)).abs().max() > 0.1
    assert (out - (_plain_layer_norm(x, 1e-5) * (1 + scale) + shift)).abs().max() > 0.05


# ------------------------------------------------------------------------------------------ pitfall 6
EIGHT_BLOCKS = dataclasses.replace(TINY, dit=dataclasses.replace(TINY.dit, num_layers=8))


def _block_io(head: Gr00tActionHead, features, image_mask, attention_mask):
    """Run the DiT once; return per block (its call args, its output)."""
    calls: dict[int, tuple] = {}
    hooks = [
        block.register_forward_hook(lambda m, args, out, i=i: calls.__setitem__(i, (args, out)))
        for i, block in enumerate(head.model.transformer_blocks)
    ]
    try:
        f, _, _, state, ids, noise = make_inputs(head.config)
        with torch.no_grad():
            vl = head.encode_context(features)
            sf = head.encode_state(state, ids)
            head.reference_step(noise, 1, vl, sf, image_mask, attention_mask, ids)
    finally:
        for h in hooks:
            h.remove()
    return calls


def test_mask_alternation_text_blocks_see_only_text_and_image_blocks_only_images():
    head = make_head(EIGHT_BLOCKS)
    features, image_mask, attention_mask, *_ = make_inputs(EIGHT_BLOCKS)
    base = _block_io(head, features, image_mask, attention_mask)
    # random perturbations (a constant offset along channels would be removed by the VLLN)
    delta = 2.0 * torch.randn(features.shape, generator=torch.Generator().manual_seed(7))
    image_only = features + delta * image_mask[..., None]  # perturb image positions
    text_only = features + delta * (~image_mask & attention_mask)[..., None]  # perturb attended text
    padding_only = features + delta * (~attention_mask)[..., None]  # perturb padding

    # through the whole DiT: block 0 (text) ignores image features; block 2 (image) does not
    perturbed = _block_io(head, image_only, image_mask, attention_mask)
    torch.testing.assert_close(perturbed[0][1], base[0][1], atol=0, rtol=0)
    torch.testing.assert_close(perturbed[1][1], base[1][1], atol=0, rtol=0)
    assert (perturbed[2][1] - base[2][1]).abs().max() > 1e-3
    # …and block 0 does see text
    assert (_block_io(head, text_only, image_mask, attention_mask)[0][1] - base[0][1]).abs().max() > 1e-3
    # padding is invisible to every block
    padded = _block_io(head, padding_only, image_mask, attention_mask)
    for i in range(8):
        torch.testing.assert_close(padded[i][1], base[i][1], atol=0, rtol=0)

    # each cross block alone, on its recorded inputs, with perturbed context
    vl = head.encode_context(features)
    perturbed_vl = {"image": head.encode_context(image_only), "text": head.encode_context(text_only)}
    for i, kind in enumerate(dit_block_kinds(EIGHT_BLOCKS)):
        args, out = base[i]
        block = head.model.transformer_blocks[i]
        if kind == "self":
            assert len(args) == 2  # (hidden_states, temb): no context, no mask
            continue
        torch.testing.assert_close(args[2], vl)
        for what, context in perturbed_vl.items():
            with torch.no_grad():
                again = block(args[0], args[1], context, args[3])
            if what == kind:
                assert (again - out).abs().max() > 1e-3, (i, what)
            else:
                torch.testing.assert_close(again, out, atol=0, rtol=0)


def test_self_attention_blocks_are_unmasked_over_state_and_action_tokens():
    head = make_head()
    block = head.model.transformer_blocks[1]
    x = torch.randn(1, 1 + TINY.action_horizon, TINY.input_embedding_dim)
    temb = torch.randn(1, TINY.input_embedding_dim)
    moved = x.clone()
    moved[:, -1] += torch.randn(TINY.input_embedding_dim)  # the last action token
    with torch.no_grad():
        assert (block(moved, temb)[:, 0] - block(x, temb)[:, 0]).abs().max() > 1e-4  # state token sees it


# ------------------------------------------------------------------------------------------ pitfalls 4, 5
def test_reference_feeds_integer_timesteps_0_250_500_750():
    head = make_head()
    seen_dit, seen_encoder = [], []
    h1 = head.model.timestep_encoder.register_forward_pre_hook(
        lambda m, args: seen_dit.append(args[0].clone())
    )
    h2 = head.action_encoder.register_forward_pre_hook(lambda m, args: seen_encoder.append(args[1].clone()))
    try:
        with torch.no_grad():
            head.reference_denoise(*make_inputs())
    finally:
        h1.remove()
        h2.remove()
    for seen in (seen_dit, seen_encoder):
        assert [t.dtype for t in seen] == [torch.int64] * 4
        assert [t.tolist() for t in seen] == [[0, 0], [250, 250], [500, 500], [750, 750]]
    assert TINY.denoising_timesteps == [0, 250, 500, 750]


def test_timesteps_follow_the_number_of_steps():
    head = make_head(dataclasses.replace(TINY, num_inference_timesteps=3))
    assert [int(head.timestep(k, 1)) for k in range(3)] == [0, 333, 666]


def test_position_embedding_is_added_to_action_tokens_only():
    head = make_head()
    features, image_mask, attention_mask, state, ids, noise = make_inputs()
    captured = []
    hook = head.model.register_forward_pre_hook(lambda m, args: captured.append(args[0].clone()))
    try:
        with torch.no_grad():
            vl, sf = head.encode_context(features), head.encode_state(state, ids)
            head.reference_step(noise, 2, vl, sf, image_mask, attention_mask, ids)
            encoded = head.action_encoder(noise, head.timestep(2, 2), ids)
    finally:
        hook.remove()
    sa = captured[0]  # [B, 1+H, C]
    H = TINY.action_horizon
    assert sa.shape == (2, 1 + H, TINY.input_embedding_dim)
    torch.testing.assert_close(sa[:, :1], sf, atol=0, rtol=0)  # state token first, no position embedding
    torch.testing.assert_close(sa[:, 1:], encoded + head.position_embedding.weight[:H], atol=0, rtol=0)


def test_only_position_rows_0_to_H_minus_1_matter():
    head = make_head()
    inputs = make_inputs()
    with torch.no_grad():
        base = head.reference_denoise(*inputs)
        # random rows: a constant offset along channels would be removed by the LayerNorms
        unused = head.position_embedding.weight[TINY.action_horizon :]
        unused += torch.randn_like(unused)
        torch.testing.assert_close(head.reference_denoise(*inputs), base, atol=0, rtol=0)
        head.position_embedding.weight[TINY.action_horizon - 1] += torch.randn(TINY.input_embedding_dim)
        assert (head.reference_denoise(*inputs) - base).abs().max() > 1e-4


def test_velocity_is_the_last_H_decoder_outputs():
    head = make_head()
    features, image_mask, attention_mask, state, ids, noise = make_inputs()
    decoded = []
    hook = head.action_decoder.register_forward_hook(lambda m, args, out: decoded.append(out.clone()))
    try:
        with torch.no_grad():
            vl, sf = head.encode_context(features), head.encode_state(state, ids)
            step = head.reference_step_outputs(noise, 0, vl, sf, image_mask, attention_mask, ids)
    finally:
        hook.remove()
    H = TINY.action_horizon
    assert decoded[0].shape == (2, 1 + H, TINY.max_action_dim)
    torch.testing.assert_close(step.velocity, decoded[0][:, 1:], atol=0, rtol=0)
    torch.testing.assert_close(step.next_actions, noise + 0.25 * decoded[0][:, 1:], atol=0, rtol=0)
    assert (decoded[0][:, :1] - decoded[0][:, 1:2]).abs().max() > 1e-4  # slicing [:H] would differ
    assert step.dit_out.shape == (2, H, TINY.hidden_size)


# ------------------------------------------------------------------------------------------ sampler
def test_reference_denoise_is_deterministic_and_non_degenerate():
    head = make_head()
    inputs = make_inputs()
    with torch.no_grad():
        first = head.reference_denoise(*inputs)
        second = head.reference_denoise(*inputs)
        other = head.reference_denoise(*inputs[:-1], torch.randn_like(inputs[-1]))
    assert torch.equal(first, second)
    assert first.shape == (2, TINY.action_horizon, TINY.max_action_dim)
    assert torch.isfinite(first).all()
    assert (first - inputs[-1]).std() > 0.1  # the four steps moved the noise
    assert (first[0] - first[1]).abs().max() > 0.1  # samples differ (embodiment, state, context)
    assert (first - other).abs().max() > 0.1


def test_reference_denoise_is_four_reference_steps():
    head = make_head()
    features, image_mask, attention_mask, state, ids, noise = make_inputs()
    with torch.no_grad():
        vl, sf = head.encode_context(features), head.encode_state(state, ids)
        x = noise
        for k in range(4):
            x = head.reference_step(x, k, vl, sf, image_mask, attention_mask, ids)
        torch.testing.assert_close(
            head.reference_denoise(features, image_mask, attention_mask, state, ids, noise), x
        )


def test_reference_runs_in_bfloat16():
    head = make_head()
    inputs = make_inputs()
    with torch.no_grad():
        fp32 = head.reference_denoise(*inputs)
        bf16 = head.to(torch.bfloat16).reference_denoise(*inputs)
    assert bf16.dtype == torch.bfloat16
    assert F.cosine_similarity(bf16.float().flatten(), fp32.flatten(), dim=0) > 0.99


def test_reference_denoise_rejects_bad_inputs():
    head = make_head()
    features, image_mask, attention_mask, state, ids, noise = make_inputs()
    with pytest.raises(ObservationError, match=r"noise has shape \(2, 3, 16\) — expected \[2, 16, 16\]"):
        head.reference_denoise(features, image_mask, attention_mask, state, ids, noise[:, :3])
    with pytest.raises(ObservationError, match="image_mask has dtype torch.int64 — expected torch.bool"):
        head.reference_denoise(features, image_mask.long(), attention_mask, state, ids, noise)
    with pytest.raises(EmbodimentError, match=r"embodiment_id \[3, 32\] — expected ids in 0..31"):
        head.reference_denoise(features, image_mask, attention_mask, state, torch.tensor([3, 32]), noise)
