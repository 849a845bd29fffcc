"""Vision and backbone graph wrappers: equal to the reference in torch, exportable with
torch.onnx.export(dynamo=True, opset 21), and equal to the reference on ONNX Runtime CPU.

The ONNX Runtime checks read the session's fp32 export (``tiny_export``, tests/conftest.py), whose driver
traces these wrappers with ``export_onnx`` on its example step (3 images of 140x196, B 2), against the
reference of the checkpoint it came from (its backbone is stored bf16: loaded fp32 here)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from gr00t_trt.export.onnx_io import FORBIDDEN_OPS
from gr00t_trt.families.n16.contract import BACKBONE, VISION
from gr00t_trt.families.n16.export.backbone import BackboneGraph
from gr00t_trt.families.n16.export.vision import VisionGraph
from gr00t_trt.families.n16.presets import preset_config
from gr00t_trt.families.n16.synthetic import synthetic_model

SIZES = [(56, 84), (84, 56)]  # two image sizes (tiny preset: 14-pixel patches, 2×2 unshuffle)


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a.astype(np.float64) - b) / np.linalg.norm(b.astype(np.float64)))


@pytest.fixture(scope="module")
def backbone():
    return synthetic_model(preset_config("tiny"), seed=0).backbone


def images(n, h, w, seed=0):
    return torch.randint(
        0, 256, (n, h, w, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )


def token_inputs(config, lengths, tokens_per_image, seed=0):
    """Left-padded batch with one image per row; image_index names each <IMG_CONTEXT>'s row, 0 elsewhere."""
    gen = torch.Generator().manual_seed(seed)
    image_id = config.backbone.image_token_index
    seq = max(lengths)
    ids = torch.zeros(len(lengths), seq, dtype=torch.int64)
    mask = torch.zeros(len(lengths), seq, dtype=torch.bool)
    for b, n in enumerate(lengths):
        row = torch.randint(0, image_id, (n,), generator=gen)
        row[3 : 3 + tokens_per_image] = image_id
        ids[b, seq - n :], mask[b, seq - n :] = row, True
    is_image = ids == image_id
    index = torch.zeros_like(ids)
    index[is_image] = torch.arange(int(is_image.sum()))
    return ids, index, mask


@pytest.fixture(scope="module")
def exported(tiny_checkpoint, tiny_export):
    """(the checkpoint's backbone loaded fp32, graph kind → its fp32 ONNX file in the session's export)."""
    from gr00t_trt.contract.manifest import load_manifest
    from gr00t_trt.families.n16.checkpoint import load_model

    manifest = load_manifest(tiny_export)
    paths = {}
    for kind in ("vision", "backbone"):
        (entry,) = manifest.graphs_of_kind(kind)
        assert entry.precision == "fp32"
        paths[kind] = tiny_export / entry.file
    model, _, _ = load_model(tiny_checkpoint, dtype=torch.float32)
    return model.backbone, paths


def onnx_session(path):
    """An exported graph (opset 21, no data-dependent or Resize ops) opened in ONNX Runtime."""
    import onnxruntime as ort

    model = onnx.load(str(path), load_external_data=False)
    assert {o.version for o in model.opset_import if o.domain in ("", "ai.onnx")} == {21}
    assert not {n.op_type for n in model.graph.node} & (FORBIDDEN_OPS | {"Resize"})
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


# ------------------------------------------------------------------------------------------ torch parity
def vision_feeds(graph, x):
    """The vision graph's inputs for images ``x``: them and the reference's position grid of their size."""
    return x, torch.from_numpy(graph.position_grid(x.shape[1], x.shape[2]))


@pytest.mark.parametrize("size", SIZES + [(56, 56)])
@torch.no_grad()
def test_vision_graph_equals_reference(backbone, size):
    graph = VisionGraph(backbone)  # one wrapper, any size
    x = images(3, *size)
    torch.testing.assert_close(graph(*vision_feeds(graph, x)), backbone.encode_images(x), rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_backbone_graph_equals_reference(backbone):
    config = backbone.config
    graph = BackboneGraph(backbone)
    ids, index, mask = token_inputs(config, [17, 11], tokens_per_image=6)
    embeds = torch.randn(12, 64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(
        graph(ids, embeds, index, mask), backbone(ids, embeds, mask), rtol=1e-5, atol=1e-5
    )


@torch.no_grad()
def test_wrappers_do_not_touch_the_model(backbone):
    before = backbone.llm.layers[0].mlp.up_proj.weight.clone()
    graph = BackboneGraph(backbone).to(torch.float16)
    vision = VisionGraph(backbone).to(torch.float16)
    assert vision.table.dtype == torch.float32  # the host's position table keeps the checkpoint's fp32
    assert backbone.dtype == torch.float32 and torch.equal(backbone.llm.layers[0].mlp.up_proj.weight, before)
    assert graph.inv_freq.dtype == torch.float32  # rotary frequencies are never rounded to fp16


# ------------------------------------------------------------------------------------------ ONNX Runtime
def test_one_vision_onnx_graph_serves_every_size(exported):
    """Traced once at 140x196, the graph runs portrait, landscape, square and 21:9-like sizes and 1 or 3
    images at fp32 parity: its patch count is dynamic, fed by the position grid of each size."""
    backbone, paths = exported
    graph = VisionGraph(backbone)
    session = onnx_session(paths["vision"])
    names = [[d.dim_param for d in i.type.tensor_type.shape.dim] for i in
             onnx.load(str(paths["vision"]), load_external_data=False).graph.input]
    assert [i.name for i in session.get_inputs()] == VISION.input_names
    assert names == [["n", "28*r", "28*c", ""], ["2*r", "2*c", ""]]  # sizes tied to one token grid r x c
    for n, size, seed in [(1, (56, 84), 5), (3, (84, 56), 6), (2, (56, 56), 7), (1, (56, 140), 8)]:
        x = images(n, *size, seed=seed)
        with torch.no_grad():
            expected = backbone.encode_images(x).numpy()
        (got,) = session.run(None, {"images": x.numpy(), "position_grid": graph.position_grid(*size)})
        assert got.shape == expected.shape
        assert rel_l2(got, expected) <= 1e-4


def test_backbone_graph_onnx_matches_reference(exported):
    backbone, paths = exported
    config = backbone.config
    session = onnx_session(paths["backbone"])
    assert [i.name for i in session.get_inputs()] == BACKBONE.input_names
    for lengths, tokens, seed in [
        ([21, 13, 8], 4, 2),
        ([31], 12, 3),
    ]:  # two batch sizes / sequence lengths / T
        ids, index, mask = token_inputs(config, lengths, tokens_per_image=tokens, seed=seed)
        embeds = torch.randn(tokens * len(lengths), 64, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            expected = backbone(ids, embeds, mask).numpy()
        feeds = {"input_ids": ids.numpy(), "image_embeds": embeds.numpy(), "image_index": index.numpy(),
                 "attention_mask": mask.numpy()}  # fmt: skip
        (got,) = session.run(None, feeds)
        assert got.shape == expected.shape
        assert rel_l2(got, expected) <= 1e-4
        assert np.isfinite(got).all()
