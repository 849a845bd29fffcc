"""N1.7's graph wrappers against the N1.7 reference modules, in PyTorch fp32 (rel L2 ≤ 1e-5): two samples
with prompts of different lengths (left padded, as the original batches them) and a second call at
another image size; the VL self-attention's bucket padding; the action-head graphs at N1.7's widths."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from gr00t_trt.families.n17.config import preset_config
from gr00t_trt.families.n17.contract import DEEPSTACK, GRAPH_SPECS
from gr00t_trt.families.n17.export.backbone import N17BackboneGraph
from gr00t_trt.families.n17.export.dit_context import N17DitContextGraph
from gr00t_trt.families.n17.export.graph_modules import graph_modules
from gr00t_trt.families.n17.export.vision import N17VisionGraph
from gr00t_trt.families.n17.model import N17ActionHead
from gr00t_trt.model.action_head import cross_block_indices, dit_block_kinds
from gr00t_trt.model.synthetic import init_synthetic_

from .conftest import TINY, host_pixels, images, prompts, rel_l2

#: (images per call, height, width): two sizes, portrait and landscape token grids (tiny: 32 px per token)
CALLS = [(4, 64, 96), (2, 128, 64)]
TEXT_LENGTHS = (7, 3)  # two samples, the second left padded by 4


@pytest.fixture(scope="module")
def vision(tiny_model):
    return N17VisionGraph(tiny_model.qwen.visual, TINY)


def chain_inputs(model, vision, n, height, width, seed):
    """Vision outputs of n images (n/2 per sample) and the backbone inputs of a left-padded 2-sample batch."""
    x = images(n, height, width, seed)
    outputs = vision(torch.from_numpy(x), *map(torch.from_numpy, vision.tables(height, width).values()))
    grid = (1, height // 16, width // 16)
    tokens = height * width // 1024
    ids, mask, pos, index, image_mask = prompts(TINY, TEXT_LENGTHS, n // 2, tokens, grid, seed)
    return x, outputs, (ids, mask, pos, index, image_mask)


@pytest.mark.parametrize("call", CALLS)
@torch.no_grad()
def test_vision_wrapper_equals_reference(tiny_model, vision, call):
    n, height, width = call
    x = images(n, height, width, seed=n)
    got = vision(torch.from_numpy(x), *map(torch.from_numpy, vision.tables(height, width).values()))
    assert [t.shape for t in got] == [(n, height * width // 1024, TINY.backbone_embedding_dim)] * 4
    embeds, deepstack = tiny_model.vision(*host_pixels(x))  # host patchify + the reference tower
    assert rel_l2(got[0].flatten(0, 1), embeds) <= 1e-5
    for k in range(len(DEEPSTACK)):
        assert rel_l2(got[1 + k].flatten(0, 1), deepstack[k]) <= 1e-5
    # the three DeepStack features are distinct (each its own merger after its own block)
    assert min(rel_l2(got[1], got[2]), rel_l2(got[2], got[3])) > 0.1


def test_vision_tables_and_learned_table(tiny_model, vision):
    from gr00t_trt.families.n17.vision import VisionGraph

    tables = vision.tables(64, 96)  # raster [gh, gw, X]; the reference's are [P, X] in merge-block order
    pos, cos, sin = VisionGraph(tiny_model.qwen.visual, TINY).tables(4, 6)
    assert [tables[k].shape for k in tables] == [(4, 6, 32), (4, 6, 16), (4, 6, 16)]
    assert all(t.dtype == np.float32 for t in tables.values())
    for name, reference in (("position_table", pos), ("rotary_cos", cos), ("rotary_sin", sin)):
        np.testing.assert_array_equal(vision.merge_block_rows(torch.from_numpy(tables[name])).numpy(), reference.numpy())
    # raster order: row 0 of the table is the top patch row (block 0's top pair, then block 1's ...)
    np.testing.assert_array_equal(tables["position_table"][0, 2], pos[4].numpy())
    np.testing.assert_array_equal(tables["position_table"][1, 0], pos[2].numpy())
    side = TINY.backbone.vision.grid_side
    learned = vision.learned_table()
    assert learned.shape == (side, side, 32) and learned.dtype == np.float32
    np.testing.assert_array_equal(learned.reshape(side * side, -1), tiny_model.qwen.visual.pos_embed.weight.numpy())
    for name in tables:  # the export driver's generic accessors give the same arrays
        np.testing.assert_array_equal(vision.grid_feed(name, 64, 96), tables[name])
    np.testing.assert_array_equal(vision.table_grid(), learned)
    with pytest.raises(Exception, match="no per-size input 'position_grid'"):
        vision.grid_feed("position_grid", 64, 96)
    with pytest.raises(Exception, match="64x80 — expected positive multiples of 32"):
        vision.tables(64, 80)


@pytest.mark.parametrize("call", CALLS)
@torch.no_grad()
def test_backbone_wrapper_equals_reference(tiny_model, vision, call):
    x, outputs, (ids, mask, pos, index, image_mask) = chain_inputs(tiny_model, vision, *call, seed=3)
    embeds = outputs[0].flatten(0, 1)  # [T, E] in LLM order: sample 0's images, then sample 1's
    deep = [o.flatten(0, 1) for o in outputs[1:]]
    graph = N17BackboneGraph(tiny_model.qwen.language_model, TINY)
    t = torch.from_numpy
    got = graph(t(ids), embeds, *deep, t(index), t(pos), t(mask))
    expected = tiny_model.backbone_features(t(ids), embeds, torch.stack(deep), t(pos), t(mask))
    assert got.shape == expected.shape == (2, ids.shape[1], TINY.backbone_embedding_dim)
    assert rel_l2(got, expected) <= 1e-5
    assert (~mask).any()  # the second sample really is left padded


@torch.no_grad()
def test_backbone_wrapper_adds_every_deepstack_feature(tiny_model, vision):
    """Each DeepStack input matters, at image rows only (a zeroed feature changes the image rows)."""
    _, outputs, (ids, mask, pos, index, image_mask) = chain_inputs(tiny_model, vision, *CALLS[0], seed=4)
    graph = N17BackboneGraph(tiny_model.qwen.language_model, TINY)
    t = torch.from_numpy
    args = [t(ids), *(o.flatten(0, 1) for o in outputs), t(index), t(pos), t(mask)]
    base = graph(*args)
    for k in range(1, 4):
        changed = list(args)
        changed[1 + k] = torch.zeros_like(args[1 + k])
        assert rel_l2(graph(*changed), base) > 1e-3


def cross_reference(model, features, image_mask, attention_mask):
    """The reference's cross-attention context: VL self-attention(VLLN(features)) (the original: no mask),
    each cross block's own to_k/to_v, V zeroed where the block may not attend (the graph's convention)."""
    head = model.action_head
    vl = model.dit_context(features)
    kinds = dit_block_kinds(TINY)
    text, image = ~image_mask & attention_mask, image_mask & attention_mask
    ks, vs = [], []
    for i in cross_block_indices(TINY):
        attn = head.model.transformer_blocks[i].attn1
        keep = (text if kinds[i] == "text" else image)[:, None, :, None]
        ks.append(attn.split_heads(attn.to_k(vl)))
        vs.append(attn.split_heads(attn.to_v(vl)) * keep)
    return torch.stack(ks), torch.stack(vs), text, image


@pytest.mark.parametrize("call", CALLS)
@torch.no_grad()
def test_dit_context_wrapper_equals_reference(tiny_model, vision, call):
    _, outputs, (ids, mask, pos, index, image_mask) = chain_inputs(tiny_model, vision, *call, seed=5)
    t = torch.from_numpy
    features = N17BackboneGraph(tiny_model.qwen.language_model, TINY)(
        t(ids), *(o.flatten(0, 1) for o in outputs), t(index), t(pos), t(mask))
    graph = N17DitContextGraph(tiny_model.action_head)
    image_mask, mask = t(image_mask), t(mask)
    cross_k, cross_v, text_bias, image_bias = graph(features, image_mask, mask, torch.ones_like(mask))
    k, v, text, image = cross_reference(tiny_model, features, image_mask, mask)
    assert rel_l2(cross_k, k) <= 1e-5 and rel_l2(cross_v, v) <= 1e-5
    assert torch.equal(text_bias[:, 0, 0] == 0, text) and torch.equal(image_bias[:, 0, 0] == 0, image)
    assert (text_bias[:, 0, 0][~text] < -1e30).all()


@pytest.mark.parametrize("side", ["right", "left"])
@torch.no_grad()
def test_dit_context_hides_bucket_padding_from_the_vl_self_attention(tiny_model, side):
    """Columns the runtime adds (original_mask False) change nothing on the original columns: those equal
    the reference run without them — while the original's own left padding stays attended."""
    gen = torch.Generator().manual_seed(11)
    b, s, extra, e = 2, 13, 5, TINY.backbone_embedding_dim
    features = torch.randn(b, s, e, generator=gen)
    mask = torch.ones(b, s, dtype=torch.bool)
    mask[1, :4] = False  # the original's own left padding of the shorter prompt
    image_mask = torch.zeros(b, s, dtype=torch.bool)
    image_mask[:, 6:10] = True
    image_mask &= mask
    graph = N17DitContextGraph(tiny_model.action_head)
    expected = graph(features, image_mask, mask, torch.ones_like(mask))

    def grow(x, fill):
        pad = torch.full((b, extra, *x.shape[2:]), fill, dtype=x.dtype) if x.dtype == torch.bool else \
            torch.randn(b, extra, *x.shape[2:], generator=gen) * 3
        return torch.cat([x, pad] if side == "right" else [pad, x], dim=1)

    original = grow(torch.ones_like(mask), False)
    got = graph(grow(features, 0), grow(image_mask, False), grow(mask, False), original)
    cols = slice(0, s) if side == "right" else slice(extra, extra + s)
    assert rel_l2(got[0][:, :, :, cols], expected[0]) <= 1e-5  # cross_k
    assert rel_l2(got[1][:, :, :, cols], expected[1]) <= 1e-5  # cross_v
    assert torch.equal(got[2][..., cols], expected[2]) and torch.equal(got[3][..., cols], expected[3])
    assert (got[2][..., ~original[0]] < -1e30).all() and (got[3][..., ~original[0]] < -1e30).all()
    # the original's own padding column is attended by the VL self-attention: marking it False changes things
    hidden = mask.clone() | True
    hidden[1, :4] = False
    assert rel_l2(graph(features, image_mask, mask, hidden)[0][:, 1], expected[0][:, 1]) > 1e-4


def run_action_head(graphs, features, image_mask, mask, original, state, embodiment, noise, steps):
    cross_k, cross_v, text_bias, image_bias = graphs["dit_context"](features, image_mask, mask, original)
    (state_features,) = graphs["state_encoder"](state, embodiment)
    x = noise
    for k in range(steps):
        step = torch.full((noise.shape[0],), k, dtype=torch.int64)
        (action_features,) = graphs["action_encoder"](x, step, embodiment)
        (dit_out,) = graphs["dit"](state_features, action_features, cross_k, cross_v, text_bias, image_bias, step)
        (x,) = graphs["action_decoder"](dit_out, x, embodiment)
    return x


@pytest.mark.parametrize("preset", ["tiny", "small"])
@torch.no_grad()
def test_action_head_graphs_at_n17_widths_equal_reference_denoise(preset):
    """N1.6's action-head wrappers on N17ActionHead (small: horizon 40, 132 dims) chained as the runtime
    does, N1.7's dit_context first, equal the reference sampler (VL self-attention included)."""
    config = preset_config(preset)
    head = init_synthetic_(N17ActionHead(config), seed=2, prefix="action_head.").float().eval()
    model = SimpleNamespace(action_head=head)  # the action-head kinds read nothing else
    kinds = [k for k in GRAPH_SPECS if k not in ("vision", "backbone")]
    graphs = {kind: module for _, (kind, module, _) in graph_modules(model, config, [24, 2], kinds).items()}
    assert list(graphs) == kinds
    gen = torch.Generator().manual_seed(4)
    b, s = 2, 12
    features = torch.randn(b, s, config.backbone_embedding_dim, generator=gen)
    mask = torch.ones(b, s, dtype=torch.bool)
    mask[1, :3] = False
    image_mask = torch.zeros(b, s, dtype=torch.bool)
    image_mask[:, 4:8] = True
    state = torch.randn(b, 1, config.max_state_dim, generator=gen)
    noise = torch.randn(b, config.action_horizon, config.max_action_dim, generator=gen)
    embodiment = torch.tensor([24, 2])
    expected = head.reference_denoise(features, image_mask, mask, state, embodiment, noise)
    slots = torch.tensor([0, 1])  # the wrappers were sliced to embodiments [24, 2]
    got = run_action_head(graphs, features, image_mask, mask, torch.ones_like(mask), state, slots, noise,
                          config.num_inference_timesteps)
    assert got.shape == (b, config.action_horizon, config.max_action_dim)
    assert rel_l2(got, expected) <= 1e-5


@torch.no_grad()
def test_casting_the_wrappers_never_touches_the_model(tiny_model):
    """A precision export casts the wrappers (.half()); the loaded model, the host's learned table and the
    M-RoPE rounding stay the fp32 checkpoint's."""
    model_state = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    modules = {kind: m.to(torch.float16) for _, (kind, m, _) in graph_modules(tiny_model, TINY, None).items()}
    after = tiny_model.state_dict()
    assert all(after[k].dtype == torch.float32 and torch.equal(after[k], v) for k, v in model_state.items())
    assert modules["vision"].table.dtype == torch.float32 and modules["backbone"].rope_dtype == torch.float32
    assert modules["vision"].learned_table().dtype == np.float32
    # the fp16 vision graph still runs and stays near fp32 (images and tables are the same inputs)
    x = images(2, 64, 64, seed=9)
    tables = [torch.from_numpy(t) for t in modules["vision"].tables(64, 64).values()]
    half = modules["vision"](torch.from_numpy(x), *tables)
    full = N17VisionGraph(tiny_model.qwen.visual, TINY)(torch.from_numpy(x), *tables)
    assert half[0].dtype == torch.float16 and rel_l2(half[0].float(), full[0]) < 1e-2


@torch.no_grad()
def test_the_seven_wrappers_chained_equal_the_reference_control_step(tiny_model):
    """vision → backbone → dit_context → the action unit, chained as the runtime does, reproduce
    ``Gr00tN1d7.reference_get_action`` on a left-padded batch of two (fp32)."""
    graphs = {kind: m for _, (kind, m, _) in graph_modules(tiny_model, TINY, None).items()}
    n, height, width = CALLS[1]
    x, outputs, (ids, mask, pos, index, image_mask) = chain_inputs(tiny_model, graphs["vision"], n, height, width, 6)
    t = torch.from_numpy
    gen = torch.Generator().manual_seed(6)
    state = torch.randn(2, 1, TINY.max_state_dim, generator=gen)
    noise = torch.randn(2, TINY.action_horizon, TINY.max_action_dim, generator=gen)
    embodiment = torch.tensor([24, 2])
    expected = tiny_model.reference_get_action(t(ids), t(mask), t(pos), *host_pixels(x), state, embodiment, noise)
    tables = [t(a) for a in graphs["vision"].tables(height, width).values()]
    vision = [o.flatten(0, 1) for o in graphs["vision"](t(x), *tables)]
    features = graphs["backbone"](t(ids), *vision, t(index), t(pos), t(mask))
    got = run_action_head(graphs, features, t(image_mask), t(mask), torch.ones_like(t(mask)), state, embodiment,
                          noise, TINY.num_inference_timesteps)
    assert rel_l2(features, expected.backbone_features) <= 1e-5
    assert rel_l2(got, expected.action_pred) <= 1e-5 and expected.action_pred.std() > 0.1
