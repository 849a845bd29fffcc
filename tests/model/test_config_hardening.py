"""config.json is untrusted: types and plausible ranges checked first, layouts computed without building a
model, and inspect separates configured embodiments from the id table (issue 7: 8, 11, 14)."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from gr00t_trt.base.errors import ConfigError
from gr00t_trt.families.n16 import checkpoint
from gr00t_trt.families.n16 import model as gr00t
from gr00t_trt.families.n16.checkpoint import model_layout
from gr00t_trt.families.n16.config import SYNTHETIC_BACKBONE_KEY, Gr00tConfig
from gr00t_trt.families.n16.layout import config_layout
from gr00t_trt.families.n16.presets import preset_config
from gr00t_trt.model.inspect import inspect_checkpoint


def _config_dict(preset: str = "tiny") -> dict:
    return preset_config(preset).to_dict()


def _edit(data: dict, path: str, value) -> dict:
    *parents, leaf = path.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "match"),
    [
        ("diffusion_model_cfg.num_layers", 400_000_000, r"diffusion_model_cfg\.num_layers must be an integer in 1\.\.256, got 400000000"),
        (f"{SYNTHETIC_BACKBONE_KEY}.vision_config.num_hidden_layers", 100_000_000,
         rf"{SYNTHETIC_BACKBONE_KEY}\.vision_config\.num_hidden_layers must be an integer in 1\.\.256"),
        ("hidden_size", -32, r"hidden_size must be an integer in 1\.\.65536, got -32"),
        ("action_horizon", "16", r"action_horizon must be an integer in 1\.\.65536, got '16'"),
        ("max_num_embodiments", None, r"max_num_embodiments must be an integer in 1\.\.1024, got None"),
        ("diffusion_model_cfg.attention_head_dim", "abc", r"diffusion_model_cfg\.attention_head_dim must be an integer"),
        ("diffusion_model_cfg.norm_eps", None, r"diffusion_model_cfg\.norm_eps must be a number in \(0\.0, 1\.0\]"),
        (f"{SYNTHETIC_BACKBONE_KEY}.downsample_ratio", 0, r"downsample_ratio must be a number in \(0\.0, 1\.0\], got 0"),
        ("use_vlln", "yes", r"use_vlln must be a bool, got 'yes'"),
        ("max_state_dim", True, r"max_state_dim must be an integer"),
        ("diffusion_model_cfg", [1, 2], r"diffusion_model_cfg must be an object, got list"),
    ],
)
def test_bad_config_values_are_one_line_config_errors(path, value, match):
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=match) as info:
        Gr00tConfig.from_dict(_edit(_config_dict(), path, value))
    assert "\n" not in str(info.value) and time.perf_counter() - started < 1.0


@pytest.mark.parametrize("preset", ["tiny", "small", "full"])
def test_config_layout_equals_the_model_state_dict(preset):
    config = preset_config(preset)
    assert config_layout(config) == model_layout(config)


def test_inspect_builds_no_module(tiny_checkpoint, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("inspect must not build a model")

    monkeypatch.setattr(gr00t.Gr00tN1d6, "__init__", refuse)
    checkpoint._model_layout.cache_clear()  # a cached meta-model layout would hide a build
    report = inspect_checkpoint(tiny_checkpoint)
    assert report.layout.ok and report.total_params > 0


def test_crafted_layer_count_fails_fast_in_inspect(tiny_checkpoint, tmp_path):
    folder = tmp_path / "c"
    shutil.copytree(tiny_checkpoint, folder)
    data = json.loads((folder / "config.json").read_text())
    data["diffusion_model_cfg"]["num_layers"] = 400_000_000
    (folder / "config.json").write_text(json.dumps(data))
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=r"num_layers must be an integer in 1\.\.256"):
        inspect_checkpoint(folder)
    assert time.perf_counter() - started < 2.0


def test_inspect_separates_configured_embodiments_from_the_id_table(tiny_checkpoint):
    report = inspect_checkpoint(tiny_checkpoint)
    assert report.configured_embodiments == ["libero_panda", "unitree_g1", "new_embodiment"]
    lines = report.summary_lines()
    configured = next(line for line in lines if line.startswith("embodiments configured in this checkpoint"))
    others = next(line for line in lines if line.startswith("other known embodiment ids, NOT configured here"))
    assert "libero_panda (id 2)" in configured and "gr1" not in configured
    assert "gr1=20*" in others and "libero_panda" not in others
    assert report.to_dict()["configured_embodiments"] == ["libero_panda", "unitree_g1", "new_embodiment"]


@pytest.mark.parametrize("content, match", [("[" * 100_000, "nests deeper than 64"), ("[]", "expected an object")])
def test_config_json_is_read_bounded_and_typed(tmp_path, content, match):
    """issue 17, item 11: a nesting bomb or a non-object config.json is one line, not a RecursionError."""
    (tmp_path / "config.json").write_text(content)
    with pytest.raises(ConfigError, match=match):
        Gr00tConfig.from_file(tmp_path / "config.json")
    from gr00t_trt.export.driver import is_export
    from gr00t_trt.model.synthetic import is_synthetic_checkpoint

    (tmp_path / "manifest.json").write_text(content)
    assert is_export(tmp_path) is False and is_synthetic_checkpoint(tmp_path) is False
