"""N1.7's graph-module plumbing: which checkpoint tensors each graph reads, the static dims, and wrappers
built one segment at a time from a lazily loaded checkpoint."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from gr00t_trt.base.errors import ExportError
from gr00t_trt.families.n17 import layout
from gr00t_trt.families.n17.config import preset_config
from gr00t_trt.families.n17.contract import DIMS, GRAPH_SPECS
from gr00t_trt.families.n17.export import graph_modules as gm
from gr00t_trt.families.n17.model import load_model, open_model
from gr00t_trt.model.action_head import cross_block_indices

#: read by no graph: the stored lm_head (the loader skips it) and the LLM's final norm (features are read
#: before it, spec §3.6)
UNREAD = {layout.LM_HEAD_KEY, layout.LLM + "norm.weight"}
#: read by two graphs: the action position table (action_encoder adds it, dit's timestep reads its device)
SHARED = {"action_head.position_embedding.weight": {"action_encoder", "dit"}}


@pytest.mark.parametrize("preset", ["tiny", "small", "full"])
def test_every_checkpoint_tensor_belongs_to_one_graph(preset):
    config = preset_config(preset)
    keys = list(layout.config_layout(config))
    readers = Counter()
    owner: dict[str, set[str]] = {}
    for kind in GRAPH_SPECS:
        for key in gm.graph_weights(kind, config, keys):
            readers[key] += 1
            owner.setdefault(key, set()).add(kind)
    assert set(keys) - set(readers) == UNREAD
    assert {k: v for k, v in owner.items() if len(v) > 1} == SHARED
    # the DiT's cross blocks' to_k/to_v are dit_context's alone (hoisted out of the DiT step)
    cross = [f"action_head.model.transformer_blocks.{i}.attn1.to_{p}." for i in cross_block_indices(config) for p in "kv"]
    hoisted = [k for k in keys if k.startswith(tuple(cross))]
    assert len(hoisted) == 4 * len(cross_block_indices(config))  # weight + bias of to_k and to_v
    assert all(owner[k] == {"dit_context"} for k in hoisted)


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_static_dims_give_every_static_dim(preset):
    config = preset_config(preset)
    dims = gm.static_dims(config)
    assert set(dims) == {n for n, d in DIMS.items() if not d.dynamic and not d.product}
    v = config.backbone.vision
    assert (dims["R"], dims["U"], dims["Dv"], dims["Dr"]) == (32, 2, v.hidden_size, v.hidden_size // v.num_heads)
    if preset == "small":
        assert (dims["H"], dims["Da"], dims["Ds"]) == (40, 132, 132)


@pytest.fixture(scope="module")
def checkpoint(n17_checkpoint):
    """The session's tiny checkpoint (seed 0, tests/families/n17/conftest.py); read only here."""
    return n17_checkpoint


@torch.no_grad()
def test_segment_modules_read_only_their_weights_and_equal_the_full_build(checkpoint):
    lazy, config, _ = open_model(checkpoint)
    model, _, _ = load_model(checkpoint)
    full = gm.graph_modules(model, config, [24, 2])
    for kinds in (["vision", "backbone"], ["dit_context", "state_encoder"], ["action_encoder", "dit", "action_decoder"]):
        built = gm.segment_modules(lazy, config, kinds, [24, 2])
        assert [kind for kind, _, _ in built.values()] == kinds
        for name, (_, module, _) in built.items():
            expected = full[name][1].state_dict()
            got = module.state_dict()
            assert got.keys() == expected.keys()
            assert all(torch.equal(got[k], expected[k]) for k in got), name
        assert all(p.is_meta for p in lazy.model.parameters())  # the model is back on meta


def test_segment_modules_refuse_a_wrapper_with_unread_weights(checkpoint, monkeypatch):
    lazy, config, _ = open_model(checkpoint)
    table = {**gm.GRAPH_WEIGHTS, "vision": gm.GRAPH_WEIGHTS["vision"][:-1]}  # DeepStack mergers left out
    monkeypatch.setattr(gm, "GRAPH_WEIGHTS", table)
    with pytest.raises(ExportError, match=r"graph vision: weight 'tower\.visual\.deepstack_merger_list\..*was not read"):
        gm.segment_modules(lazy, config, ["vision"], None)
