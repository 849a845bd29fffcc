"""N1.7's graphs through the project's exporter (dynamo, opset 21, dynamic dims as ``families.n17.contract``
declares them) and ONNX Runtime: fp32 parity ≤ 1e-4 with the torch wrapper on sizes other than the
trace's, and every op inside TensorRT 10's ONNX parser support list.

The graphs are those of the session's fp32 export (``n17_export``, tests/families/n17/conftest.py: every
embodiment, so unsliced action-head graphs) with wrappers built from its checkpoint, traced by the driver on the example step
(``families/n17/export/examples.py``: B 2 at the DIMS' example grid), not re-traced here: the same
``export_onnx`` call on the same wrappers, and the files the runtime loads."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from gr00t_trt.contract.manifest import load_manifest
from gr00t_trt.export.action_head_graphs import example_inputs
from gr00t_trt.export.onnx_io import FORBIDDEN_OPS, OPSET, all_nodes
from gr00t_trt.families.n17.contract import GRAPH_SPECS
from gr00t_trt.families.n17.export.graph_modules import graph_modules
from gr00t_trt.families.n17.model import load_model

from .conftest import TINY, images, prompts, rel_l2

#: ONNX ops our graphs may contain, each marked supported ("Y", for the types used here) in the operator
#: matrix of onnx-tensorrt (docs/operators.md, the 10.x line; TensorRT 10.0 parses opsets 9-20, so
#: Gelu-20 is in range). A graph with any other op fails this check until its support is confirmed in
#: that matrix and it is added here.
TENSORRT10_OPS = frozenset({
    "Add", "And", "Cast", "Concat", "Constant", "ConstantOfShape", "Cos", "Div", "Equal", "Erf", "Expand",
    "Gather", "Gelu", "Gemm", "Greater", "GreaterOrEqual", "LayerNormalization", "Less", "LessOrEqual", "MatMul", "Max",
    "Min", "Mul", "Neg", "Not", "Or", "Pow", "Range", "Reciprocal", "ReduceMean", "ReduceSum", "Reshape", "Shape",
    "Sigmoid", "Sin", "Slice", "Softmax", "Split", "Sqrt", "Squeeze", "Sub", "Tanh", "Tile", "Transpose",
    "Unsqueeze", "Where", "Clip", "Identity", "Relu",
})
DEEP = ("deepstack_0", "deepstack_1", "deepstack_2")


@pytest.fixture(scope="module")
def modules(n17_checkpoint, n17_export):
    """The fp32 wrappers of the export's graphs, built from its checkpoint (whose backbone is stored bf16)."""
    assert all(e.slot == e.id for e in load_manifest(n17_export).embodiments.values())  # unsliced
    model, config, _ = load_model(n17_checkpoint, torch.float32)
    assert config == TINY
    return {kind: module for _, (kind, module, _) in graph_modules(model, TINY, None).items()}


def graph_path(export_dir, kind):
    (entry,) = load_manifest(export_dir).graphs_of_kind(kind)
    assert entry.precision == "fp32"
    return export_dir / entry.file


def export_session(export_dir, kind):
    """The export's graph of ``kind``: its opset and ops checked, opened in ONNX Runtime."""
    import onnxruntime as ort

    path = graph_path(export_dir, kind)
    model = onnx.load(str(path), load_external_data=False)
    assert {o.version for o in model.opset_import if o.domain in ("", "ai.onnx")} == {OPSET}
    ops = {n.op_type for n in all_nodes(model.graph)}
    assert not ops & FORBIDDEN_OPS
    assert ops <= TENSORRT10_OPS, f"{kind}: ops outside TensorRT 10's support list: {sorted(ops - TENSORRT10_OPS)}"
    assert all(n.domain in ("", "ai.onnx") for n in all_nodes(model.graph))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def check(session, module, kind, feeds):
    """ONNX Runtime against the torch wrapper on the same feeds (fp32): rel L2 ≤ 1e-4 per output."""
    spec = GRAPH_SPECS[kind]
    with torch.no_grad():
        expected = module(*(torch.from_numpy(np.ascontiguousarray(feeds[t.name])) for t in spec.inputs))
    expected = (expected,) if isinstance(expected, torch.Tensor) else expected
    got = session.run(spec.output_names, {t.name: feeds[t.name] for t in spec.inputs})
    for tensor, g, e in zip(spec.outputs, got, expected, strict=True):
        assert g.shape == tuple(e.shape), tensor.name
        if tensor.name.endswith("_bias"):  # masks: 0 where attended, hugely negative elsewhere
            np.testing.assert_array_equal(g == 0, e.numpy() == 0)
        else:
            assert rel_l2(g, e.numpy()) <= 1e-4, tensor.name


def vision_feeds(vision, n, height, width, seed):
    return {"images": images(n, height, width, seed), **vision.tables(height, width)}


def test_vision_onnx_serves_every_size(modules, n17_export):
    vision = modules["vision"]
    session = export_session(n17_export, "vision")
    graph = onnx.load(str(graph_path(n17_export, "vision")), load_external_data=False).graph
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in (*graph.input, *graph.output)}
    assert dims["images"] == ["n", "32*r", "32*c", 3]  # one graph, sizes tied to one token grid r x c
    assert dims["position_table"] == ["2*r", "2*c", 32] and dims["rotary_cos"] == dims["rotary_sin"] == ["2*r", "2*c", 16]
    for n, height, width, seed in [(1, 64, 96, 1), (2, 128, 64, 2), (3, 64, 64, 3)]:
        check(session, vision, "vision", vision_feeds(vision, n, height, width, seed))


def backbone_feeds(modules, n_per_sample, height, width, text_lengths, seed):
    vision = modules["vision"]
    with torch.no_grad():
        feeds = vision_feeds(vision, n_per_sample * len(text_lengths), height, width, seed)
        outputs = vision(*(torch.from_numpy(feeds[k]) for k in GRAPH_SPECS["vision"].input_names))
    tokens = height * width // 1024
    ids, mask, pos, index, _ = prompts(TINY, text_lengths, n_per_sample, tokens, (1, height // 16, width // 16), seed)
    rows = {name: o.flatten(0, 1).numpy() for name, o in zip(("image_embeds", *DEEP), outputs, strict=True)}
    return {"input_ids": ids, **rows, "image_index": index, "position_ids": pos, "attention_mask": mask}


def test_backbone_onnx_matches_wrapper(modules, n17_export):
    backbone = modules["backbone"]
    session = export_session(n17_export, "backbone")
    for n, height, width, lengths, seed in [(2, 64, 96, (3, 12, 6), 1), (1, 128, 64, (5,), 2)]:
        check(session, backbone, "backbone", backbone_feeds(modules, n, height, width, lengths, seed))


def context_feeds(batch, seq, extra, seed):
    """Backbone-like features of a left-padded batch, ``extra`` bucket columns on the right."""
    rng = np.random.default_rng(seed)
    total = seq + extra
    mask = np.zeros((batch, total), dtype=bool)
    for b in range(batch):
        mask[b, min(b, seq // 3):seq] = True  # sample b left padded by b (the original's own padding)
    image_mask = np.zeros_like(mask)
    image_mask[:, seq // 3: 2 * seq // 3] = True
    original = np.zeros_like(mask)
    original[:, :seq] = True
    features = rng.standard_normal((batch, total, TINY.backbone_embedding_dim)).astype(np.float32)
    return {"backbone_features": features, "image_mask": image_mask & mask, "attention_mask": mask,
            "original_mask": original}


def test_dit_context_onnx_matches_wrapper(modules, n17_export):
    module = modules["dit_context"]
    session = export_session(n17_export, "dit_context")
    for batch, seq, extra, seed in [(3, 11, 0, 1), (1, 26, 7, 2)]:
        check(session, module, "dit_context", context_feeds(batch, seq, extra, seed))


@pytest.mark.parametrize("kind", ["state_encoder", "action_encoder", "dit", "action_decoder"])
def test_action_head_onnx_at_n17_widths(modules, kind, n17_export):
    module = modules[kind]
    session = export_session(n17_export, kind)
    for batch, seq, seed in [(3, 17, 1), (1, 9, 2)]:
        args = example_inputs(kind, TINY, batch=batch, seq_len=seq, seed=seed)
        check(session, module, kind, {t.name: a.numpy() for t, a in zip(GRAPH_SPECS[kind].inputs, args, strict=True)})
