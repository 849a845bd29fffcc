"""N1.7 config reading and checkpoint layout: spec §1.1/§1.2 values, §2.2-2.4 keys, counts and bytes."""

from __future__ import annotations

import json

import pytest

from gr00t_trt.base.errors import CheckpointError, ConfigError
from gr00t_trt.families.n17 import layout
from gr00t_trt.families.n17.config import N17Config, preset_config, read_config

#: spec §2.4, exact
SPEC_COUNTS = {
    "vision": 406_957_056, "llm": 1_116_542_976, "lm_head": 311_164_928, "vlln": 4_096,
    "vl_self_attention": 201_433_088, "state_encoder": 54_738_944, "action_encoder": 233_127_936,
    "action_decoder": 37_916_800, "position_embedding": 1_572_864, "dit": 1_091_722_240,
}  # fmt: skip

#: the released config.json's architecture values (spec §1.1, nvidia/GR00T-N1.7-3B @ 2fc962b)
RELEASE_CONFIG = {
    "architectures": ["Gr00tN1d7"], "model_type": "Gr00tN1d7", "model_name": "nvidia/Cosmos-Reason2-2B",
    "select_layer": 16, "backbone_embedding_dim": 2048, "max_state_dim": 132, "max_action_dim": 132,
    "action_horizon": 40, "hidden_size": 1024, "add_pos_embed": True, "max_seq_len": 1024, "use_vlln": True,
    "vl_self_attention_cfg": {"num_layers": 4, "num_attention_heads": 32, "attention_head_dim": 64, "dropout": 0.2,
                              "final_dropout": True, "positional_embeddings": None},
    "use_alternate_vl_dit": True, "num_inference_timesteps": 4, "max_num_embodiments": 32,
    "diffusion_model_cfg": {"num_layers": 32, "num_attention_heads": 32, "attention_head_dim": 48,
                            "norm_type": "ada_norm", "dropout": 0.2, "final_dropout": True, "output_dim": 1024,
                            "interleave_self_attention": True, "positional_embeddings": None},
    "state_dropout_prob": 0.2, "use_percentiles": True, "tune_llm": True, "rtc_ramp_rate": 6.0,
}  # fmt: skip


def test_release_config_reads_as_the_full_preset(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(RELEASE_CONFIG))
    config = read_config(tmp_path)
    assert config == preset_config("full") == N17Config()
    assert config.backbone.text.rope_theta == 5e6 and config.backbone.text.mrope_section == (24, 20, 20)
    assert config.backbone.vision.deepstack_visual_indexes == (5, 11, 17)
    assert config.backbone.image_token_id == 151655 and config.vl_self_attention.num_layers == 4


def test_absent_fields_take_the_code_defaults_not_the_release_values():
    data = {k: v for k, v in RELEASE_CONFIG.items() if k not in ("select_layer", "vl_self_attention_cfg")}
    data["diffusion_model_cfg"] = {k: v for k, v in data["diffusion_model_cfg"].items() if k != "num_layers"}
    config = N17Config.from_dict(data)
    assert (config.select_layer, config.dit.num_layers, config.vl_self_attention) == (12, 16, None)


@pytest.mark.parametrize("preset", ["tiny", "small", "full"])
def test_config_json_round_trip(preset):
    config = preset_config(preset)
    assert N17Config.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize(
    "change, needle",
    [({"model_type": "Gr00tN1d6"}, "model_type 'Gr00tN1d6'"), ({"select_layer": "16"}, "select_layer must be an integer"),
     ({"select_layer": 29}, "select_layer 29 outside 1..28"), ({"model_name": "x/y"}, "unknown backbone model_name"),
     ({"vl_self_attention_cfg": [4]}, "vl_self_attention_cfg must be an object"),
     ({"max_seq_len": 10}, "action_horizon 40 > max_seq_len 10")],
)  # fmt: skip
def test_bad_config_values_give_one_line_errors(change, needle):
    with pytest.raises(ConfigError, match=needle) as info:
        N17Config.from_dict({**RELEASE_CONFIG, **change}, "cfg.json")
    assert "\n" not in str(info.value) and "cfg.json" in str(info.value)


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="config.json"):
        read_config(tmp_path)


def test_full_layout_reproduces_the_release_counts_and_bytes():
    full = layout.config_layout(preset_config("full"))
    assert len(full) == 1031
    assert layout.total_bytes(full) == 6_910_361_856
    counts = layout.parameter_counts({k: s for k, (s, _) in full.items()})
    assert counts == SPEC_COUNTS
    assert sum(counts.values()) - counts["lm_head"] == 3_144_016_000
    kinds = {}
    for key in full:
        kinds[layout.component_of(key)] = kinds.get(layout.component_of(key), 0) + 1
    assert (kinds["vision"], kinds["llm"], kinds["lm_head"]) == (315, 178, 1)
    assert not any(f"language_model.layers.{n}." in k for k in full for n in range(16, 28))


def test_full_layout_spot_shapes():
    full = layout.config_layout(preset_config("full"))
    v, t = layout.VISION, layout.LLM
    assert full[v + "patch_embed.proj.weight"] == ((1024, 3, 2, 16, 16), "BF16")
    assert full[v + "deepstack_merger_list.2.norm.weight"][0] == (4096,)
    assert full[v + "merger.norm.weight"][0] == (1024,)
    assert full[t + "layers.15.self_attn.k_proj.weight"][0] == (1024, 2048)
    assert full["action_head.state_encoder.layer1.W"][0] == (32, 132, 1024)
    assert full["action_head.action_decoder.layer2.W"][0] == (32, 1024, 132)
    assert full["action_head.model.transformer_blocks.0.attn1.to_k.weight"][0] == (1536, 2048)
    assert full["action_head.vl_self_attention.transformer_blocks.3.ff.net.0.proj.weight"][0] == (8192, 2048)
    assert "action_head.mask_token" not in full


def _shapes(config):
    return {k: s for k, (s, _) in layout.config_layout(config).items()}


def test_accounting_accepts_the_exact_layout_and_skips_lm_head():
    found = _shapes(preset_config("tiny"))
    assert layout.check_layout(found, preset_config("tiny")) == [layout.LM_HEAD_KEY]


@pytest.mark.parametrize("damage, needle", [
    ("drop", "1 missing (backbone.model.model.visual.pos_embed.weight)"),
    ("extra", "1 unexpected (backbone.model.model.language_model.layers.99.mlp.up_proj.weight)"),
    ("shape", "1 with wrong shape (action_head.state_encoder.layer1.W: expected [32, 24, 32], got [32, 17, 32])"),
    ("lm_head_shape", "1 with wrong shape (backbone.model.lm_head.weight"),
])  # fmt: skip
def test_accounting_names_each_problem_in_one_line(damage, needle):
    config = preset_config("tiny")
    found = _shapes(config)
    if damage == "drop":
        del found[layout.VISION + "pos_embed.weight"]
    elif damage == "extra":
        found[layout.LLM + "layers.99.mlp.up_proj.weight"] = (1, 1)
    elif damage == "shape":
        found["action_head.state_encoder.layer1.W"] = (32, 17, 32)
    else:
        found[layout.LM_HEAD_KEY] = (3, 3)
    with pytest.raises(CheckpointError) as info:
        layout.check_layout(found, config, source="ckpt")
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_accounting_refuses_integer_dtypes():
    from gr00t_trt.model.checkpoint import StoredTensor

    config = preset_config("tiny")
    found = {k: StoredTensor("BF16", s, "a.safetensors", 0) for k, s in _shapes(config).items()}
    assert layout.compare_layout(found, config).ok
    found[layout.LLM + "norm.weight"] = StoredTensor("I32", (64,), "a.safetensors", 256)
    with pytest.raises(CheckpointError, match="non-float dtype"):
        layout.check_layout(found, config)


@pytest.mark.parametrize("field, value", [("mrope_section", ["24", 20, 20]), ("mrope_section", 64),
                                          ("deepstack_visual_indexes", [5, None])])
def test_bad_list_fields_of_a_synthetic_backbone_are_named(field, value):
    data = preset_config("tiny").to_dict()
    section = "text_config" if field == "mrope_section" else "vision_config"
    data["gr00t_trt_backbone_config"][section][field] = value
    with pytest.raises(ConfigError, match=rf"{section}\.{field} must be a list") as info:
        N17Config.from_dict(data, "cfg.json")
    assert "\n" not in str(info.value)
