"""Synthetic N1.7 checkpoints: real key names and sharding, sidecar files, the full header-only layout."""

from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors import safe_open

from gr00t_trt.base.errors import CheckpointError
from gr00t_trt.families.n17 import layout
from gr00t_trt.families.n17.config import BUILTIN_EMBODIMENT_IDS, preset_config, read_config
from gr00t_trt.families.n17.synthetic import make_checkpoint, make_header_only_checkpoint, synthetic_model
from gr00t_trt.model.checkpoint import INDEX_FILE, read_tensor_index
from gr00t_trt.model.synthetic import synthetic_tensor


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("n17") / "tiny", "tiny")


@pytest.fixture(scope="module")
def full_headers(tmp_path_factory):
    return make_header_only_checkpoint(tmp_path_factory.mktemp("n17") / "full")


def _generic(key: str) -> str:
    """A key with its layer/block numbers replaced by N, so keys of any depth compare by name."""
    return re.sub(r"\.\d+\.", ".N.", key)


def test_every_synthetic_key_maps_onto_the_full_layout(tiny):
    tiny_tensors = read_tensor_index(tiny)
    full_by_name = {_generic(k): shape for k, (shape, _) in layout.config_layout(preset_config("full")).items()}
    assert {_generic(k) for k in tiny_tensors} == set(full_by_name)
    for key, tensor in tiny_tensors.items():  # same role and rank: only the sizes differ
        assert len(tensor.shape) == len(full_by_name[_generic(key)]), key


def test_tiny_checkpoint_files_and_accounting(tiny):
    files = {p.name for p in tiny.iterdir()}
    assert {"config.json", INDEX_FILE, "processor_config.json", "statistics.json", "embodiment_id.json"} <= files
    shards = sorted(n for n in files if n.endswith(".safetensors"))
    assert len(shards) >= 2 and all(re.fullmatch(rf"model-\d{{5}}-of-{len(shards):05d}\.safetensors", n) for n in shards)
    config = read_config(tiny)
    assert config == preset_config("tiny")
    tensors = read_tensor_index(tiny)
    assert layout.check_layout(tensors, config) == [layout.LM_HEAD_KEY]
    index = json.loads((tiny / INDEX_FILE).read_text())
    assert index["metadata"]["total_size"] == sum(t.nbytes for t in tensors.values())


def test_tiny_weights_are_the_synthetic_values(tiny):
    key = layout.VISION + "blocks.1.attn.qkv.weight"
    shard = json.loads((tiny / INDEX_FILE).read_text())["weight_map"][key]
    with safe_open(str(tiny / shard), framework="pt") as f:
        stored = f.get_tensor(key)
    expected = synthetic_tensor(key, tuple(stored.shape), 0).to(stored.dtype)
    assert stored.equal(expected) and stored.float().std() > 0


def test_sidecar_files(tiny):
    processor = json.loads((tiny / "processor_config.json").read_text())
    assert processor["processor_class"] == "Gr00tN1d7Processor"
    kwargs = processor["processor_kwargs"]
    assert kwargs["letter_box_transform"] is False and kwargs["use_percentiles"] is True
    assert kwargs["crop_fraction"] == 0.95 and kwargs["shortest_image_edge"] == 256
    modality = kwargs["modality_configs"]
    droid = modality["oxe_droid_relative_eef_relative_joint"]
    assert droid["video"]["delta_indices"] == [-15, 0] and len(droid["video"]["modality_keys"]) == 2
    assert modality["libero_sim"]["video"]["delta_indices"] == [0]
    assert len(droid["action"]["delta_indices"]) == preset_config("tiny").action_horizon  # 40 capped at 16
    ids = json.loads((tiny / "embodiment_id.json").read_text())
    assert ids == {tag: BUILTIN_EMBODIMENT_IDS[tag] for tag in modality}
    assert ids["oxe_droid_relative_eef_relative_joint"] == 24 and ids["libero_sim"] == 2
    stats = json.loads((tiny / "statistics.json").read_text())
    eef = stats["oxe_droid_relative_eef_relative_joint"]
    assert set(eef) == {"state", "action", "relative_action"}
    assert set(eef["state"]["eef_9d"]) == {"min", "max", "mean", "std", "q01", "q99"}
    relative = eef["relative_action"]["eef_9d"]
    assert [len(relative["q01"]), len(relative["q01"][0])] == [16, 9]  # per step [H, dim]
    assert all(lo <= hi for lo, hi in zip(eef["state"]["eef_9d"]["q01"], eef["state"]["eef_9d"]["q99"], strict=True))


def test_full_header_only_layout_is_the_release(full_headers):
    tensors = read_tensor_index(full_headers)
    assert len(tensors) == 1031
    assert sum(t.nbytes for t in tensors.values()) == 6_910_361_856
    assert {t.dtype for t in tensors.values()} == {"BF16"}
    assert len({t.file for t in tensors.values()}) == 2
    config = read_config(full_headers)
    assert layout.check_layout(tensors, config) == [layout.LM_HEAD_KEY]
    counts = layout.parameter_counts({k: t.shape for k, t in tensors.items()})
    assert sum(counts.values()) == 3_455_180_928 and counts["vision"] == 406_957_056


def test_existing_folder_is_not_replaced_without_force(tiny, tmp_path):
    with pytest.raises(CheckpointError):
        make_checkpoint(tiny, "tiny")
    with pytest.raises(CheckpointError, match="unknown preset 'huge'"):
        make_checkpoint(tmp_path / "x", "huge")


def test_in_memory_synthetic_model_holds_the_checkpoint_values(tiny):
    from gr00t_trt.families.n17.model import load_model

    loaded, config, _ = load_model(tiny)
    memory = synthetic_model(config).state_dict()
    for key, value in loaded.state_dict().items():
        stored = memory[key].to(torch.bfloat16 if key.startswith("backbone.") else torch.float32).float()
        assert torch.equal(value, stored), key
