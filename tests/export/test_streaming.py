"""The export streams the model: one dataflow piece's weights at a time, each graph's torch weights freed
before ModelOpt or ONNX Runtime load its ONNX (bf16 graphs, validated in PyTorch, keep theirs)."""

from __future__ import annotations

from gr00t_trt.contract.manifest import load_manifest
from gr00t_trt.families.n16.export.graph_modules import graph_weights


def test_the_export_holds_one_dataflow_piece_of_weights_at_a_time(mixed_streamed):
    """Watched on the shared mixed export (tests/export/conftest.py: fp8 vision, dit_context and dit, a bf16
    backbone, fp16 small graphs): every graph kind's path through the driver, quantised ones included."""
    export_dir, streaming = mixed_streamed
    manifest = load_manifest(export_dir)
    assert streaming.violations == []
    assert streaming.pieces == [["vision"], ["backbone"], ["dit_context"], ["state_encoder"],
                                ["action_encoder", "dit", "action_decoder"]]
    assert [name for step, name in streaming.checked if step == "validate"] == list(manifest.graphs)
    assert {name for step, name in streaming.checked if step == "quantize"} == {"vision", "dit_context", "dit"}
    assert streaming.alive_after == []


def test_graph_weights_split_the_model_between_the_graphs(tiny_checkpoint):
    """Every checkpoint tensor is read by some graph; only the action head's small tables by two."""
    from gr00t_trt.families.n16.checkpoint import open_model
    from gr00t_trt.families.n16.contract import GRAPH_SPECS

    lazy, config, _ = open_model(tiny_checkpoint)
    readers: dict[str, list[str]] = {}
    for kind in GRAPH_SPECS:
        for key in graph_weights(kind, config, lazy.keys):
            readers.setdefault(key, []).append(kind)
    assert set(readers) == set(lazy.keys)
    shared = {key for key, kinds in readers.items() if len(kinds) > 1}
    assert shared == {"action_head.position_embedding.weight"}
    assert all(kind in ("dit_context", "dit") for key, kinds in readers.items() if ".attn1.to_k." in key for kind in kinds)
