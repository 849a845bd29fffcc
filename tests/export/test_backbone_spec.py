"""The exported vision and backbone graphs on ONNX Runtime against transformers' own SigLIP2 and Qwen3
modules, built here from config.json and loaded from the raw checkpoint tensors, plus the spec's
pixel-unshuffle, mlp1 and token-placement rules (gr00t-n16-model.md §3) written out in numpy/torch.

Nothing of ours is on the expected side: not the model code, not the loader, not the wrappers.
"""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import Qwen3Config, Qwen3Model, Siglip2VisionConfig, Siglip2VisionModel
from transformers.models.siglip2.image_processing_pil_siglip2 import convert_image_to_patches

from gr00t_trt.processing.position_grid import TABLE_FILE, load_table, resample_grid

VISION = "backbone.model.vision_model.vision_model."
MLP1 = "backbone.model.mlp1."
LLM = "backbone.model.language_model.model."


@pytest.fixture(scope="module")
def raw(tiny_checkpoint) -> tuple[dict[str, torch.Tensor], dict]:
    weights = {}
    for shard in sorted(tiny_checkpoint.glob("*.safetensors")):
        weights |= {k: v.float() for k, v in load_file(shard).items() if k.startswith("backbone.")}
    return weights, json.loads((tiny_checkpoint / "config.json").read_text())


def strip(weights: dict, prefix: str, drop: str | None = None) -> dict:
    return {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix) and not (drop and drop in k)}


def session(folder, name: str) -> ort.InferenceSession:
    return ort.InferenceSession(str(folder / f"{name}.onnx"), providers=["CPUExecutionProvider"])


def rel_l2(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_vision_graph_matches_transformers_siglip2_unshuffle_and_mlp1(raw, tiny_export):
    weights, config = raw
    vc = config["gr00t_trt_backbone_config"]["vision_config"]
    tower = Siglip2VisionModel(Siglip2VisionConfig(**vc, vision_use_head=False)).eval()
    tower.load_state_dict(strip(weights, VISION, drop="head."), strict=True)
    p = vc["patch_size"]

    # a 16:9 camera through the one vision graph, its position grid resampled on the host (numpy) from the
    # table the export ships; transformers resizes the checkpoint's table itself
    images = np.random.default_rng(4).integers(0, 256, size=(2, 252, 448, 3), dtype=np.uint8)
    grid = resample_grid(load_table(tiny_export / TABLE_FILE, vc["hidden_size"]), 252 // p, 448 // p)
    (got,) = session(tiny_export, "vision").run(None, {"images": images, "position_grid": grid})

    # §5.1 scaling to [-1, 1] and transformers' own patch order
    pixels = (images.astype(np.float32) / 255.0 - 0.5) / 0.5
    patches = np.stack([convert_image_to_patches(x.transpose(2, 0, 1), p) for x in pixels])  # [n, P, 3p²]
    gh, gw = 252 // p, 448 // p
    with torch.no_grad():
        feats = tower(pixel_values=torch.from_numpy(patches),
                      pixel_attention_mask=torch.ones(2, gh * gw, dtype=torch.long),
                      spatial_shapes=torch.tensor([[gh, gw]] * 2)).last_hidden_state.numpy()  # [n, gh·gw, D]
    d = feats.shape[-1]
    # §3.2 pixel-unshuffle: token (r, s) channel c·4 + 2i + j = feature c of patch (2r+i, 2s+j)
    grid = feats.reshape(2, gh // 2, 2, gw // 2, 2, d)  # [n, r, i, s, j, c]
    tokens = grid.transpose(0, 1, 3, 5, 2, 4).reshape(2, (gh // 2) * (gw // 2), 4 * d)  # [n, t, 4D]
    # §3.2 mlp1: LayerNorm(eps 1e-5, affine) → Linear → GELU(erf) → Linear
    w = strip(weights, MLP1)

    def mlp1(t: np.ndarray) -> np.ndarray:
        x = F.layer_norm(torch.from_numpy(t), (4 * d,), w["0.weight"], w["0.bias"], eps=1e-5)
        return (F.gelu(x @ w["1.weight"].T + w["1.bias"]) @ w["3.weight"].T + w["3.bias"]).numpy()

    want = mlp1(tokens)
    assert got.shape == want.shape == (2, 144, config["backbone_embedding_dim"])
    assert rel_l2(got, want) <= 1e-4
    # the channel order matters: offset-major channels ((2i + j)·D + c) would be far off
    offset_major = grid.transpose(0, 1, 3, 2, 4, 5).reshape(tokens.shape)
    assert rel_l2(got, mlp1(offset_major)) > 0.05


def test_backbone_graph_matches_transformers_qwen3_with_spec_token_placement(raw, tiny_export):
    weights, config = raw
    tc = config["gr00t_trt_backbone_config"]["text_config"]
    image_token = config["gr00t_trt_backbone_config"]["image_token_index"]
    llm = Qwen3Model(Qwen3Config(**{**tc, "num_hidden_layers": config["select_layer"]}, attention_bias=False,
                                 use_sliding_window=False)).eval()
    llm.load_state_dict(strip(weights, LLM), strict=True)

    rng = np.random.default_rng(6)
    batch, seq, per_sample = 2, 24, 5
    input_ids = rng.integers(0, 1000, size=(batch, seq)).astype(np.int64)
    input_ids[:, 8 : 8 + per_sample] = image_token
    attention_mask = np.ones((batch, seq), bool)
    attention_mask[1, :4] = False  # left padding of the second sample
    image_embeds = rng.standard_normal((batch * per_sample, config["backbone_embedding_dim"])).astype(np.float32)
    is_image = input_ids == image_token
    image_index = np.zeros((batch, seq), np.int64)
    image_index[is_image] = np.arange(int(is_image.sum()))
    (got,) = session(tiny_export, "backbone").run(None, {
        "input_ids": input_ids, "image_embeds": image_embeds, "image_index": image_index,
        "attention_mask": attention_mask})

    # §3.3: embed, overwrite <IMG_CONTEXT> rows in row-major order over (batch, position), Qwen3, final norm
    embeds = strip(weights, LLM)["embed_tokens.weight"][torch.from_numpy(input_ids)].clone()  # [B, S, E]
    rows = iter(torch.from_numpy(image_embeds))
    for b in range(batch):
        for s in range(seq):
            if is_image[b, s]:
                embeds[b, s] = next(rows)
    with torch.no_grad():
        want = llm(inputs_embeds=embeds, attention_mask=torch.from_numpy(attention_mask).long()).last_hidden_state
    assert got.shape == (batch, seq, config["backbone_embedding_dim"])
    assert rel_l2(got[attention_mask], want.numpy()[attention_mask]) <= 1e-4
    # image rows matter: a different assignment of rows to samples changes the features
    swapped = np.concatenate([image_embeds[per_sample:], image_embeds[:per_sample]])
    (other,) = session(tiny_export, "backbone").run(None, {
        "input_ids": input_ids, "image_embeds": swapped, "image_index": image_index,
        "attention_mask": attention_mask})
    assert rel_l2(other[attention_mask], got[attention_mask]) > 1e-2
