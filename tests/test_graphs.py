"""Graph declarations: dims, names, ranges and profile shapes derived from one declaration."""

from __future__ import annotations

import pytest

from gr00t_trt.contract.graphs import dynamic_ranges, graph_name, shape_ranges
from gr00t_trt.families.n16.contract import CONTRACT, DIMS, GRAPH_SPECS

DYNAMIC_DIMS = CONTRACT.dynamic_dims


def test_every_dim_a_tensor_names_is_declared():
    for spec in GRAPH_SPECS.values():
        for tensor in (*spec.inputs, *spec.outputs):
            assert all(isinstance(d, int) or d in DIMS for d in tensor.dims), (spec.kind, tensor)


def test_dynamic_dims_have_trace_bounds_and_distinct_example_sizes():
    assert set(DYNAMIC_DIMS) == {"B", "S", "T", "n", "r", "c"}
    assert all(DIMS[d].trace_max for d in DYNAMIC_DIMS)
    examples = [DIMS[d].example for d in DYNAMIC_DIMS if DIMS[d].example is not None]
    assert len(examples) == len(set(examples)) and all(e > 1 for e in examples)


def test_graph_names():
    assert graph_name("vision") == "vision"  # one vision graph serves every image size
    assert graph_name("dit") == "dit"


def test_profile_shapes_come_from_the_ranges():
    ranges = dynamic_ranges(max_batch=2, max_seq_len=300, token_grids=[(9, 12), (9, 9)])
    assert ranges == {"B": [1, 1, 2], "S": [1, 256, 300], "n": [1, 1, 8], "T": [81, 108, 864], "r": [9, 9, 9],
                      "c": [9, 12, 12]}
    cross_k = GRAPH_SPECS["dit"].tensor("cross_k")
    static = {"L": 16, "Hc": 32, "Dh": 48}
    assert shape_ranges(cross_k, static, ranges) == ((16, 1, 32, 1, 48), (16, 1, 32, 256, 48), (16, 2, 32, 300, 48))
    with pytest.raises(KeyError):
        shape_ranges(cross_k, {}, ranges)  # a static dim without a size


def test_portrait_and_landscape_sizes_make_one_range_and_derived_dims_follow_it():
    # 4:3 first (the opt), then portrait 16:9 and landscape 21:9: rows and columns each span all of them
    ranges = dynamic_ranges(max_batch=4, max_seq_len=512, token_grids=[(9, 12), (16, 9), (9, 21)])
    assert ranges["r"] == [9, 9, 16] and ranges["c"] == [9, 12, 21]
    assert ranges["n"] == [1, 1, 16] and ranges["T"] == [81, 108, 16 * 16 * 21]
    static = {"R": 28, "U": 2, "Dv": 1152, "E": 2048}
    images, grid = GRAPH_SPECS["vision"].inputs
    # images and position grid agree at min, opt and max (TensorRT checks the graph at each)
    assert shape_ranges(images, static, ranges) == ((1, 252, 252, 3), (1, 252, 336, 3), (16, 448, 588, 3))
    assert shape_ranges(grid, static, ranges) == ((18, 18, 1152), (18, 24, 1152), (32, 42, 1152))
    embeds = GRAPH_SPECS["vision"].outputs[0]
    assert embeds.shape({**static, "n": 2, "r": 9, "c": 16}) == (2, 144, 2048)  # t = r·c tokens of a 16:9 image
    assert embeds.shape({**static, "n": 2, "t": 7, "r": 9, "c": 16}) == (2, 7, 2048)  # a given size wins
    with pytest.raises(KeyError, match="'r'"):
        images.shape({**static, "n": 1, "c": 9})
