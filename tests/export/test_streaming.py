"""The export streams the model: one dataflow piece's weights at a time, each graph's torch weights freed
before ModelOpt or ONNX Runtime load its ONNX (bf16 graphs, validated in PyTorch, keep theirs)."""

from __future__ import annotations

import weakref

from gr00t_trt.export import precision, quantize
from gr00t_trt.export.driver import ExportOptions, export_checkpoint
from gr00t_trt.families.n16.export.graph_modules import graph_weights
from gr00t_trt.families.registry import N16


def test_the_export_holds_one_dataflow_piece_of_weights_at_a_time(tiny_checkpoint, tmp_path, monkeypatch):
    tensors: dict[str, list[weakref.ref]] = {}  # graph name -> its wrapper's parameters and buffers
    pieces, checked = [], []
    piece_of: dict[str, int] = {}

    def alive(names) -> list[str]:
        return [name for name in names if any(ref() is not None for ref in tensors[name])]

    face = N16.export()
    build = face.segment_modules

    def tracked_build(lazy, config, kinds, slots):
        assert not alive(tensors), f"{alive(tensors)} still hold weights when {kinds} are built"
        assert not [n for n, p in lazy.model.named_parameters() if not p.is_meta]  # the model holds none
        modules = build(lazy, config, kinds, slots)
        assert not [n for n, p in lazy.model.named_parameters() if not p.is_meta]
        for name, (_, module, _) in modules.items():
            tensors[name] = [weakref.ref(t) for t in (*module.parameters(), *module.buffers())]
        pieces.append(kinds)
        piece_of.update(dict.fromkeys(modules, len(pieces)))
        return modules

    quantize_graph = quantize.quantize_graph

    def tracked_quantize(path, kind, feeds, **kwargs):
        assert not alive([path.stem]), f"{path.stem}'s torch weights are alive while it is quantised"
        earlier = alive(n for n in tensors if piece_of[n] != piece_of[path.stem])
        assert not earlier, f"{earlier} still hold weights while {path.name} is quantised"
        checked.append(("quantize", path.stem))
        return quantize_graph(path, kind, feeds, **kwargs)

    validate = precision.validate_graph

    def tracked_validate(path, name, kind, graph_precision, module, feeds, reference):
        others = alive(n for n in tensors if piece_of[n] != piece_of[name])  # same piece: same or tiny weights
        assert not others, f"{others} still hold weights while {name} is validated"
        if graph_precision == "bf16":
            assert module is not None and alive([name])  # validated in PyTorch
        else:
            assert module is None and not alive([name]), f"{name}'s torch weights are alive on ORT"
        checked.append(("validate", name))
        return validate(path, name, kind, graph_precision, module, feeds, reference)

    monkeypatch.setattr(face, "segment_modules", tracked_build)
    monkeypatch.setattr(quantize, "quantize_graph", tracked_quantize)
    monkeypatch.setattr(precision, "validate_graph", tracked_validate)
    options = ExportOptions(precision="fp16", graph_precision="backbone=bf16,dit=fp8", embodiments=("libero_panda",),
                            image_sizes=((252, 252), (252, 336)), calib_count=1)
    manifest = export_checkpoint(tiny_checkpoint, tmp_path / "out", options)

    assert pieces == [["vision"], ["backbone"], ["dit_context"], ["state_encoder"],
                      ["action_encoder", "dit", "action_decoder"]]
    assert [name for step, name in checked if step == "validate"] == list(manifest.graphs)
    assert ("quantize", "dit") in checked
    assert not alive(tensors)


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
