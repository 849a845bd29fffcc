"""Graph declarations: dims, names, ranges and profile shapes derived from one declaration."""

from __future__ import annotations

import pytest

from gr00t_trt.graphs import DIMS, DYNAMIC_DIMS, GRAPH_SPECS, dynamic_ranges, graph_name, shape_ranges


def test_every_dim_a_tensor_names_is_declared():
    for spec in GRAPH_SPECS.values():
        for tensor in (*spec.inputs, *spec.outputs):
            assert all(isinstance(d, int) or d in DIMS for d in tensor.dims), (spec.kind, tensor)


def test_dynamic_dims_have_trace_bounds_and_distinct_example_sizes():
    assert set(DYNAMIC_DIMS) == {"B", "S", "T", "n"}
    assert all(DIMS[d].trace_max for d in DYNAMIC_DIMS)
    examples = [DIMS[d].example for d in DYNAMIC_DIMS if DIMS[d].example is not None]
    assert len(examples) == len(set(examples)) and all(e > 1 for e in examples)


def test_graph_names():
    assert graph_name("vision", {"h": 252, "w": 336}) == "vision_252x336"
    assert graph_name("dit") == "dit"
    with pytest.raises(KeyError, match="needs its image size"):
        graph_name("vision")


def test_profile_shapes_come_from_the_ranges():
    ranges = dynamic_ranges(max_batch=2, max_seq_len=300, tokens_per_image=[108, 81])
    assert ranges == {"B": [1, 1, 2], "S": [1, 256, 300], "n": [1, 1, 8], "T": [81, 108, 864]}
    cross_k = GRAPH_SPECS["dit"].tensor("cross_k")
    static = {"L": 16, "Hc": 32, "Dh": 48}
    assert shape_ranges(cross_k, static, ranges) == ((16, 1, 32, 1, 48), (16, 1, 32, 256, 48), (16, 2, 32, 300, 48))
    with pytest.raises(KeyError):
        shape_ranges(cross_k, {}, ranges)  # a static dim without a size
