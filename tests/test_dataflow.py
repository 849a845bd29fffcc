"""The control step's dataflow table: consistent with the graph declarations, and the one chain used."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from gr00t_trt.contract import dataflow
from gr00t_trt.contract.dataflow import CARRY, GRID, OBS, STEP
from gr00t_trt.families.n16.contract import CONTRACT, GRAPH_SPECS


def test_every_graph_kind_runs_once_in_the_table_and_every_input_has_a_source():
    assert [s.kind for s in CONTRACT.control_step] == list(GRAPH_SPECS)
    for stage in CONTRACT.control_step:
        assert list(stage.feeds) == GRAPH_SPECS[stage.kind].input_names
    CONTRACT.check()


def test_a_broken_table_is_caught():
    broken = list(CONTRACT.control_step)
    dit = CONTRACT.stages["dit"]
    broken[5] = dataclasses.replace(dit, feeds={**dit.feeds, "cross_k": "action_decoder"})  # produced later
    with pytest.raises(AssertionError, match="comes from 'action_decoder', which runs later"):
        dataflow.Contract(family="broken", graphs=GRAPH_SPECS, dims=CONTRACT.dims, control_step=tuple(broken))


def test_sub_chains_and_their_external_inputs():
    assert [s.kind for s in CONTRACT.chain("dit_context")] == list(GRAPH_SPECS)[2:]
    assert set(CONTRACT.external_inputs("dit_context")) == {
        "backbone_features", "image_mask", "attention_mask", "state", "embodiment_id", "step_weight"}
    assert set(CONTRACT.external_inputs("vision")) == {
        "images", "input_ids", "image_index", "attention_mask", "image_mask", "state", "embodiment_id", "step_weight"}
    with pytest.raises(ValueError, match="can start at vision, backbone, dit_context"):
        CONTRACT.chain("dit")


def test_evaluate_follows_the_table_with_steps_and_carry():
    """A recording runner shows the order, the step table and the carried actions."""
    calls = []

    def run(kind, name, feeds):
        calls.append((name, {k: np.asarray(v).copy() for k, v in feeds.items()}))
        spec = GRAPH_SPECS[kind]
        if kind == "action_decoder":
            return {"next_actions": feeds["actions"] + 1}
        return {t.name: np.zeros(1) for t in spec.outputs}

    values = {name: np.zeros(1) for name in CONTRACT.external_inputs("dit_context")}
    values[dataflow.CARRY_START] = np.zeros((2, 1))
    out = CONTRACT.evaluate(run, values, steps=3, start="dit_context")
    assert [name for name, _ in calls] == ["dit_context", "state_encoder"] + ["action_encoder", "dit", "action_decoder"] * 3
    steps = [feeds["step"].tolist() for name, feeds in calls if name == "dit"]
    assert steps == [[0, 0], [1, 1], [2, 2]]
    carried = [feeds["actions"][0, 0] for name, feeds in calls if name == "action_encoder"]
    assert carried == [0, 1, 2]  # noise, then each step's next_actions
    assert [a[0, 0] for a in out["actions"]] == [1, 2, 3]


def test_sources_are_the_five_kinds():
    sources = {src for s in CONTRACT.control_step for src in s.feeds.values()}
    assert sources - set(GRAPH_SPECS) == {OBS, STEP, CARRY, GRID}


def test_one_vision_graph_runs_once_per_image_size_with_that_size_s_grid():
    """Images of three sizes in LLM order → one call of the one vision graph per size, each given the grid
    of its size, rows reassembled in LLM order."""
    calls = []

    def run(kind, name, feeds):
        calls.append((name, feeds["images"].shape, feeds["position_grid"]))
        n, h, w, _ = feeds["images"].shape
        return {"image_embeds": feeds["images"][:, :1, :1, 0].reshape(n, 1, 1).repeat(2, axis=1).astype(np.float32)}

    sizes = [(252, 448), (448, 252), (252, 448), (252, 252)]
    images = [np.full((h, w, 3), i, np.uint8) for i, (h, w) in enumerate(sizes)]
    out = CONTRACT.evaluate(run, {"images": images}, steps=0, stop="backbone",
                            grids=lambda name, h, w: f"{name} {h}x{w}")
    assert [(name, shape, grid) for name, shape, grid in calls] == [
        ("vision", (2, 252, 448, 3), "position_grid 252x448"), ("vision", (1, 448, 252, 3), "position_grid 448x252"),
        ("vision", (1, 252, 252, 3), "position_grid 252x252")]
    assert out["image_embeds"][:, 0].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    with pytest.raises(ValueError, match="pass grids= to evaluate"):
        CONTRACT.evaluate(run, {"images": images}, steps=0, stop="backbone")
