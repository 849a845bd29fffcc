"""Checkpoint I/O: strict key/shape accounting (tiny, small, full), header parsing, truncation,
missing / unexpected / mis-shaped tensors, sharded and single-file layouts, resolving ids."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from gr00t_trt.base.errors import CheckpointError
from gr00t_trt.families.n16.checkpoint import (
    check_layout,
    expected_layout,
    is_known_unused,
    known_unused_layout,
    load_model,
    model_layout,
)
from gr00t_trt.families.n16.presets import preset_config
from gr00t_trt.families.n16.synthetic import make_header_only_checkpoint
from gr00t_trt.model import checkpoint as ckpt
from gr00t_trt.model.checkpoint import (
    INDEX_FILE,
    hub_offline,
    read_tensor_index,
    resolve_checkpoint,
    resolve_checkpoint_headers,
)
from gr00t_trt.model.synthetic import synthetic_tensor

UNUSED_COUNT = 12  # lm_head + 11 SigLIP2 pooling-head tensors


# ------------------------------------------------------------------------------------------ helpers
def copy_checkpoint(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def rewrite(folder: Path, mutate) -> None:
    """Load every shard (safetensors only), let ``mutate(tensors)`` change the dict, write one file per
    original shard again and a matching index (new keys go to the first shard)."""
    index = json.loads((folder / INDEX_FILE).read_text())
    shards = sorted(set(index["weight_map"].values()))
    tensors = {}
    origin = {}
    for name in shards:
        for key, value in load_file(str(folder / name)).items():
            tensors[key], origin[key] = value, name
    mutate(tensors)
    weight_map = {key: origin.get(key, shards[0]) for key in tensors}
    for name in shards:
        save_file(
            {k: v.contiguous() for k, v in tensors.items() if weight_map[k] == name}, str(folder / name)
        )
    index["weight_map"] = weight_map
    (folder / INDEX_FILE).write_text(json.dumps(index))


# ------------------------------------------------------------------------------------------ layout accounting
@pytest.mark.parametrize("preset", ["tiny", "small", "full"])
def test_meta_model_plus_unused_equals_checkpoint_layout(preset, tmp_path, tiny_checkpoint):
    """The meta-device model's state_dict + the known-unused tensors == the checkpoint's tensors."""
    from gr00t_trt.families.n16.model import Gr00tN1d6

    config = preset_config(preset)
    folder = tiny_checkpoint if preset == "tiny" else make_header_only_checkpoint(tmp_path / preset, config)
    index = read_tensor_index(folder)
    with torch.device("meta"):
        state = Gr00tN1d6(config).state_dict()
    found = {k: info.shape for k, info in index.items()}
    wanted = {k: tuple(v.shape) for k, v in state.items()} | known_unused_layout(config)
    assert found == wanted
    assert set(check_layout(index, config)) == {k for k in found if is_known_unused(k)}
    assert len(check_layout(index, config)) == UNUSED_COUNT


def test_full_layout_matches_spec():
    """Independent facts of spec §2 / §6 about the real checkpoint."""
    layout = expected_layout(preset_config("full"))
    assert len(layout) == 1106
    assert sum(math.prod(s) for s in layout.values()) == 3_286_608_832
    vision = "backbone.model.vision_model.vision_model."
    facts = {
        vision + "embeddings.patch_embedding.weight": (1152, 588),
        vision + "embeddings.position_embedding.weight": (256, 1152),
        vision + "encoder.layers.26.mlp.fc1.weight": (4304, 1152),
        vision + "post_layernorm.bias": (1152,),
        vision + "head.attention.in_proj_weight": (3456, 1152),
        vision + "head.probe": (1, 1, 1152),
        "backbone.model.mlp1.0.weight": (4608,),
        "backbone.model.mlp1.1.weight": (2048, 4608),
        "backbone.model.mlp1.3.weight": (2048, 2048),
        "backbone.model.language_model.model.embed_tokens.weight": (151680, 2048),
        "backbone.model.language_model.model.layers.15.self_attn.k_proj.weight": (1024, 2048),
        "backbone.model.language_model.model.layers.15.self_attn.q_norm.weight": (128,),
        "backbone.model.language_model.model.norm.weight": (2048,),
        "backbone.model.language_model.lm_head.weight": (151680, 2048),
        "action_head.state_encoder.layer1.W": (32, 128, 1024),
        "action_head.action_encoder.W2.W": (32, 3072, 1536),
        "action_head.model.transformer_blocks.0.attn1.to_k.weight": (1536, 2048),
        "action_head.model.transformer_blocks.1.attn1.to_k.weight": (1536, 1536),
        "action_head.model.transformer_blocks.31.ff.net.0.proj.weight": (6144, 1536),
        "action_head.model.proj_out_2.weight": (1024, 1536),
        "action_head.position_embedding.weight": (1024, 1536),
    }
    for key, shape in facts.items():
        assert layout[key] == shape, key
    assert "backbone.model.language_model.model.layers.16.mlp.up_proj.weight" not in layout  # 16 layers kept
    assert "action_head.mask_token" not in layout  # state_dropout_prob 0
    assert not any(k.startswith("backbone.model.vision_model.vision_model.vision_model.") for k in layout)


def test_model_layout_needs_no_memory():
    layout = model_layout(preset_config("full"))  # meta device: returns at once, nothing allocated
    assert len(layout) == 1106 - UNUSED_COUNT


# ------------------------------------------------------------------------------------------ loading
def test_load_model_is_strict_and_exact(tiny_checkpoint):
    model, config, folder = load_model(tiny_checkpoint)
    assert folder == tiny_checkpoint and config == preset_config("tiny")
    assert not model.training
    for key, value in model.state_dict().items():
        stored = checkpoint_dtype_of(key)
        expected = synthetic_tensor(key, tuple(value.shape), 0).to(stored).float()
        assert value.dtype == torch.float32
        torch.testing.assert_close(value, expected, rtol=0, atol=0, msg=key)


def checkpoint_dtype_of(key: str) -> torch.dtype:
    return torch.bfloat16 if key.startswith("backbone.") else torch.float32


def test_load_model_casts_mixed_dtypes(tiny_checkpoint):
    model, _, _ = load_model(tiny_checkpoint, dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    # floating buffers are rounded like the original's model.to(bf16) (issue 8; tests/export/test_precision_bf16.py)
    assert model.backbone.llm.rotary_emb.inv_freq.dtype == torch.bfloat16


def test_missing_tensor_is_named(tiny_checkpoint, tmp_path):
    folder = copy_checkpoint(tiny_checkpoint, tmp_path / "c")
    key = "action_head.model.transformer_blocks.2.attn1.to_v.bias"
    rewrite(folder, lambda t: t.pop(key))
    with pytest.raises(CheckpointError, match=rf"1 missing \({key}\)"):
        load_model(folder)


def test_unexpected_tensor_is_named(tiny_checkpoint, tmp_path):
    folder = copy_checkpoint(tiny_checkpoint, tmp_path / "c")
    key = "action_head.model.extra_layer.weight"
    rewrite(folder, lambda t: t.update({key: torch.zeros(3)}))
    with pytest.raises(CheckpointError, match=rf"1 unexpected \({key}\)"):
        load_model(folder)


def test_misshaped_tensor_is_named(tiny_checkpoint, tmp_path):
    folder = copy_checkpoint(tiny_checkpoint, tmp_path / "c")
    key = "backbone.model.mlp1.1.weight"
    rewrite(folder, lambda t: t.update({key: t[key].T}))
    with pytest.raises(CheckpointError, match=rf"{key}: expected \[64, 128\], got \[128, 64\]"):
        load_model(folder)


def test_many_problems_fit_one_line(tiny_checkpoint, tmp_path):
    folder = copy_checkpoint(tiny_checkpoint, tmp_path / "c")
    rewrite(folder, lambda t: [t.pop(k) for k in list(t) if k.startswith("action_head.model.")])
    with pytest.raises(CheckpointError) as info:
        load_model(folder)
    message = str(info.value)
    assert "\n" not in message and "missing" in message and "more" in message


def test_config_from_another_model_is_refused(tiny_checkpoint, tmp_path):
    folder = copy_checkpoint(tiny_checkpoint, tmp_path / "c")
    config = json.loads((folder / "config.json").read_text())
    config["select_layer"] = 1
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        CheckpointError, match=r"unexpected \(backbone\.model\.language_model\.model\.layers\.1\."
    ):
        load_model(folder)


def test_unused_mask_token_is_skipped_explicitly(tiny_checkpoint, tmp_path):
    folder = copy_checkpoint(tiny_checkpoint, tmp_path / "c")
    rewrite(folder, lambda t: t.update({"action_head.mask_token": torch.zeros(1, 1, 32)}))
    skipped = check_layout(read_tensor_index(folder), preset_config("tiny"))
    assert "action_head.mask_token" in skipped and len(skipped) == UNUSED_COUNT + 1
    load_model(folder)  # loads fine without it


# ------------------------------------------------------------------------------------------ headers
def test_truncated_shard_is_detected(tiny_checkpoint, tmp_path):
    folder = copy_checkpoint(tiny_checkpoint, tmp_path / "c")
    shard = sorted(folder.glob("model-*.safetensors"))[-1]
    with shard.open("r+b") as f:
        f.truncate(shard.stat().st_size - 10)
    with pytest.raises(CheckpointError, match=rf"truncated safetensors file .*{shard.name}"):
        read_tensor_index(folder)
    with pytest.raises(CheckpointError, match=shard.name):
        load_model(folder)


@pytest.mark.parametrize("size", [3, 20])
def test_shard_cut_inside_header_is_detected(tiny_checkpoint, tmp_path, size):
    folder = copy_checkpoint(tiny_checkpoint, tmp_path / "c")
    shard = sorted(folder.glob("model-*.safetensors"))[0]
    with shard.open("r+b") as f:
        f.truncate(size)
    with pytest.raises(CheckpointError, match=rf"truncated safetensors file .*{shard.name}"):
        read_tensor_index(folder)


def test_not_a_safetensors_file(tiny_checkpoint, tmp_path):
    folder = copy_checkpoint(tiny_checkpoint, tmp_path / "c")
    shard = sorted(folder.glob("model-*.safetensors"))[0]
    shard.write_bytes((12).to_bytes(8, "little") + b"not json!!!!" + b"\0" * 64)
    with pytest.raises(CheckpointError, match=rf"{shard.name} is not a safetensors file"):
        read_tensor_index(folder)


def test_missing_shard_and_index_mismatch(tiny_checkpoint, tmp_path):
    folder = copy_checkpoint(tiny_checkpoint, tmp_path / "a")
    shard = sorted(folder.glob("model-*.safetensors"))[1]
    shard.unlink()
    with pytest.raises(CheckpointError, match=rf"lists shard '{shard.name}', which is missing"):
        read_tensor_index(folder)

    folder = copy_checkpoint(tiny_checkpoint, tmp_path / "b")
    index = json.loads((folder / INDEX_FILE).read_text())
    index["weight_map"]["action_head.ghost"] = sorted(set(index["weight_map"].values()))[0]
    (folder / INDEX_FILE).write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match=r"not in this shard \(action_head\.ghost\)"):
        read_tensor_index(folder)

    folder = copy_checkpoint(tiny_checkpoint, tmp_path / "c")
    index = json.loads((folder / INDEX_FILE).read_text())
    dropped = "action_head.vlln.bias"
    del index["weight_map"][dropped]
    (folder / INDEX_FILE).write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match=rf"does not list \({dropped}\)"):
        read_tensor_index(folder)


def test_single_file_checkpoint(tiny_checkpoint, tmp_path):
    folder = copy_checkpoint(tiny_checkpoint, tmp_path / "c")
    tensors = {}
    for shard in sorted(folder.glob("model-*.safetensors")):
        tensors.update(load_file(str(shard)))
        shard.unlink()
    (folder / INDEX_FILE).unlink()
    save_file(tensors, str(folder / "model.safetensors"))
    assert set(read_tensor_index(folder)) == set(tensors)
    model, _, _ = load_model(folder)
    reference, _, _ = load_model(tiny_checkpoint)
    for (k, a), (_, b) in zip(model.state_dict().items(), reference.state_dict().items(), strict=True):
        assert torch.equal(a, b), k


def test_folder_without_weights(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="neither model.safetensors.index.json nor model.safetensors"):
        read_tensor_index(tmp_path)


# ------------------------------------------------------------------------------------------ resolving
def test_resolve_local_folder_and_bad_paths(tiny_checkpoint, tmp_path):
    assert resolve_checkpoint(tiny_checkpoint) == tiny_checkpoint
    assert resolve_checkpoint(str(tiny_checkpoint)) == tiny_checkpoint
    with pytest.raises(CheckpointError, match="checkpoint folder not found"):
        resolve_checkpoint(tmp_path / "nowhere" / "at" / "all")
    with pytest.raises(CheckpointError, match="is a file"):
        resolve_checkpoint(tiny_checkpoint / "config.json")


def test_hub_id_that_cannot_be_downloaded_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(
        CheckpointError,
        match=r"could not download checkpoint 'nvidia/GR00T-N1\.6-3B'.*local checkpoint folder",
    ):
        resolve_checkpoint("nvidia/GR00T-N1.6-3B", local_files_only=True)

    import huggingface_hub

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    monkeypatch.setattr("gr00t_trt.model.checkpoint.hub_offline", lambda: False)  # the Hub answers, with an error
    with pytest.raises(
        CheckpointError, match=r"could not download checkpoint 'someone/some-model' .*\(OSError\)"
    ):
        load_model("someone/some-model")


def test_an_unreachable_hub_fails_fast_and_names_the_offline_cache(tmp_path, monkeypatch):
    """Where the network times out, the Hub client retries for 10 s and more before giving up: a 2 s probe
    of the Hub's host comes first, and the message says how to work offline."""
    import socket
    import time

    import huggingface_hub

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)

    def no_route(address, timeout=None):
        assert timeout is not None and timeout <= 2.0  # the probe is bounded
        raise TimeoutError("timed out")

    def slow_hub(*args, local_files_only=False, **kwargs):
        if not local_files_only:
            time.sleep(10)  # what the Hub client spends on an unreachable network
        raise huggingface_hub.errors.LocalEntryNotFoundError("not in the cache")

    monkeypatch.setattr(socket, "create_connection", no_route)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", slow_hub)
    for resolve in (resolve_checkpoint, resolve_checkpoint_headers):
        start = time.perf_counter()
        with pytest.raises(CheckpointError, match=r"not reachable \(or HF_HUB_OFFLINE is set\) and it is not in the "
                           r"local cache \(.*hub\)") as caught:
            resolve("nvidia/GR00T-N1.6-3B")
        assert time.perf_counter() - start < 3, resolve.__name__
        assert "pass a local checkpoint folder" in str(caught.value)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)  # said so: no probe at all
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("probed although offline"))
    assert hub_offline()


def test_hub_id_downloads_json_weights_and_tokenizer(tiny_checkpoint, monkeypatch):
    import huggingface_hub

    calls = {}

    def fake_download(repo_id, allow_patterns=None, local_files_only=False):
        calls.update(repo_id=repo_id, patterns=allow_patterns)
        return str(tiny_checkpoint)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    model, _, folder = load_model("nvidia/GR00T-N1.6-3B")
    assert folder == tiny_checkpoint and calls["repo_id"] == "nvidia/GR00T-N1.6-3B"
    assert {"*.json", "*.safetensors"} <= set(calls["patterns"]) and any(
        "tokenizer" in p for p in calls["patterns"]
    )


def test_load_model_rejects_unknown_dtype(tiny_checkpoint):
    with pytest.raises(CheckpointError, match="dtype torch.int8"):
        load_model(tiny_checkpoint, dtype=torch.int8)


def test_parameters_on_meta_keeps_buffers_real():
    from gr00t_trt.families.n16.backbone import EagleBackbone

    with ckpt.parameters_on_meta():
        bb = EagleBackbone(preset_config("tiny"))
    assert all(p.is_meta for p in bb.parameters())
    assert not bb.llm.rotary_emb.inv_freq.is_meta
