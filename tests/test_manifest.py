"""The manifest contract: round trip, lookups and the one tensor type (schema checks: test_manifest_validation)."""

from __future__ import annotations

import pytest

from gr00t_trt.base.errors import EmbodimentError, ManifestError
from gr00t_trt.contract.graphs import TensorSpec
from gr00t_trt.contract.manifest import EmbodimentEntry, GraphEntry, Manifest
from gr00t_trt.families.n16.contract import GRAPH_SPECS


def _manifest() -> Manifest:
    spec = GRAPH_SPECS["state_encoder"]
    concrete = tuple(TensorSpec(t.name, "float32" if t.dtype == "float" else t.dtype, t.dims) for t in spec.inputs)
    outputs = tuple(TensorSpec(t.name, "float32", t.dims) for t in spec.outputs)
    graph = GraphEntry("state_encoder", "state_encoder", "state_encoder.onnx", "fp32", concrete, outputs)
    tokens = {"image_token_index": 9, "image_start_token_id": 10, "image_end_token_id": 11, "pad_token_id": 0}
    return Manifest(source={"checkpoint": "x"}, model={}, dims={"Ds": 5, "C": 6},
                    dynamic_dims={"B": [1, 1, 2], "S": [1, 8, 16], "T": [1, 1, 4], "n": [1, 1, 4]},
                    steps=4, image_sizes=((252, 336),), embodiments={"a": EmbodimentEntry("a", 3, 0)},
                    graphs={"state_encoder": graph}, files={}, tokens=tokens, pixels_per_token=784, exporter={})


def test_round_trip_keeps_every_field_and_the_tensor_type():
    manifest = _manifest()
    again = Manifest.from_dict(manifest.to_dict())
    assert again == manifest
    assert isinstance(again.graph("state_encoder").inputs[0], TensorSpec)


def test_lookups_fail_with_one_line():
    manifest = _manifest()
    entry = manifest.graph("state_encoder")
    assert entry.tensor("state").shape(manifest.sizes(entry) | {"B": 2}) == (2, 1, 5)
    with pytest.raises(ManifestError, match="graph 'state_encoder' has no tensor 'nope' — it has: state, embodiment_id"):
        entry.tensor("nope")
    with pytest.raises(ManifestError, match="the export has no graph 'dit' — it has: state_encoder"):
        manifest.graph("dit")
    with pytest.raises(EmbodimentError, match="embodiment 'b' was not exported — this export has: a"):
        manifest.embodiment("b")
