"""Parsing processor_config.json / statistics.json / embodiment_id.json and its failure messages."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gr00t_trt.base.errors import CheckpointError, EmbodimentError
from gr00t_trt.families.n16.processing.modality import BUILTIN_EMBODIMENT_IDS, load_processor_spec
from gr00t_trt.processing.modality import ActionFormat, ActionRep, ActionType


def test_synthetic_files_load(synthetic_dir, tiny_config):
    spec = load_processor_spec(synthetic_dir)
    assert spec.tags == ("libero_panda", "unitree_g1", "new_embodiment") and not spec.unusable
    s = spec.settings
    assert (s.shortest_image_edge, s.crop_fraction, s.max_state_dim, s.max_action_dim) == (256, 0.95, 16, 16)
    assert s.apply_sincos_state_encoding and s.use_relative_action and s.formalize_language and not s.use_percentiles

    libero = spec.embodiment("libero_panda")
    assert libero.id == 2 and libero.video_keys == ("image", "wrist_image") and libero.num_frames == 1
    assert libero.language_key == "annotation.human.action.task_description"
    assert libero.state_dims == {"eef_pose": 9, "gripper": 2} and libero.action_dims == {"eef_pose": 9, "gripper": 1}
    assert libero.action_horizon == min(16, tiny_config.action_horizon)
    cfg = libero.action_configs["eef_pose"]
    assert (cfg.rep, cfg.type, cfg.format, cfg.state_key) == (
        ActionRep.RELATIVE, ActionType.EEF, ActionFormat.XYZ_ROT6D, "eef_pose")  # fmt: skip
    assert libero.action_configs["gripper"].rep is ActionRep.ABSOLUTE
    assert libero.is_relative("eef_pose") and not libero.is_relative("gripper")
    assert libero.action_norm["eef_pose"].min.shape == (libero.action_horizon, 9)  # relative_action stats
    assert libero.action_mean_std_keys == ("gripper",)

    g1 = spec.embodiment("unitree_g1")
    assert g1.id == 8 and g1.sin_cos_keys == ("waist",) and g1.state_width == 5 + 3 + 2 * 3
    new = spec.embodiment("new_embodiment")
    assert new.id == 10 and new.action_horizon == 8 and new.action_configs["eef"].format is ActionFormat.XYZ_ROTVEC


def test_export_directory_layout_is_the_same(synthetic_dir, tmp_path):
    for name in ("processor_config.json", "statistics.json", "embodiment_id.json"):
        (tmp_path / name).write_bytes((synthetic_dir / name).read_bytes())
    assert load_processor_spec(tmp_path).tags == load_processor_spec(synthetic_dir).tags


def test_embodiment_ids_merge_over_the_builtin_map(make_spec):
    spec = make_spec(lambda kw, st, ids: ids.update(libero_panda=5))
    assert spec.embodiment("libero_panda").id == 5
    assert spec.embodiment_ids["gr1"] == 20 and spec.embodiment_ids["oxe_droid"] == 16
    assert set(BUILTIN_EMBODIMENT_IDS) <= set(spec.embodiment_ids)


def test_missing_embodiment_id_file_uses_builtin(synthetic_dir, tmp_path):
    for name in ("processor_config.json", "statistics.json"):
        (tmp_path / name).write_bytes((synthetic_dir / name).read_bytes())
    assert load_processor_spec(tmp_path).embodiment("unitree_g1").id == 8


def test_unknown_embodiment_lists_the_known_ones(make_spec):
    with pytest.raises(EmbodimentError, match=r"unknown embodiment 'gr1' — expected one of: libero_panda, new_embodiment, unitree_g1"):
        make_spec().embodiment("gr1")


def test_missing_statistics_name_the_key(make_spec):
    spec = make_spec(lambda kw, st, ids: st["unitree_g1"]["state"].pop("waist"))
    assert "unitree_g1" in spec.unusable and "libero_panda" in spec.tags
    with pytest.raises(EmbodimentError, match=r"missing statistics for embodiment 'unitree_g1' state key 'waist'"):
        spec.embodiment("unitree_g1")


def test_missing_relative_statistics(make_spec):
    spec = make_spec(lambda kw, st, ids: st["libero_panda"].pop("relative_action"))
    with pytest.raises(EmbodimentError, match=r"'libero_panda' relative_action key 'eef_pose'"):
        spec.embodiment("libero_panda")
    # without relative actions the absolute statistics suffice
    spec = make_spec(lambda kw, st, ids: (st["libero_panda"].pop("relative_action"), kw.update(use_relative_action=False)))
    assert spec.embodiment("libero_panda").action_norm["eef_pose"].min.shape == (9,)


def test_missing_embodiment_statistics(make_spec):
    with pytest.raises(EmbodimentError, match=r"no statistics for embodiment 'new_embodiment'"):
        make_spec(lambda kw, st, ids: st.pop("new_embodiment")).embodiment("new_embodiment")


def test_percentiles_replace_min_max_but_not_relative_stats(make_spec, processor_files):
    spec = make_spec(lambda kw, st, ids: kw.update(use_percentiles=True))
    stats = processor_files["statistics"]["libero_panda"]
    np.testing.assert_array_equal(spec.embodiment("libero_panda").state_norm["gripper"].min, stats["state"]["gripper"]["q01"])
    np.testing.assert_array_equal(spec.embodiment("libero_panda").action_norm["gripper"].max, stats["action"]["gripper"]["q99"])
    np.testing.assert_array_equal(
        spec.embodiment("libero_panda").action_norm["eef_pose"].min, stats["relative_action"]["eef_pose"]["min"]
    )


def test_sincos_keys_only_when_enabled(make_spec):
    assert make_spec(lambda kw, st, ids: kw.update(apply_sincos_state_encoding=False)).embodiment("unitree_g1").sin_cos_keys == ()


def test_enum_values_are_accepted_and_bad_ones_named(make_spec):
    def by_value(kw, st, ids):
        kw["modality_configs"]["libero_panda"]["action"]["action_configs"][0].update(rep="relative", type="eef", format="xyz+rot6d")

    assert make_spec(by_value).embodiment("libero_panda").action_configs["eef_pose"].format is ActionFormat.XYZ_ROT6D

    def bad(kw, st, ids):
        kw["modality_configs"]["libero_panda"]["action"]["action_configs"][0]["format"] = "QUAT"

    with pytest.raises(EmbodimentError, match=r"action 'eef_pose' format is 'QUAT' — expected one of: DEFAULT, XYZ_ROT6D, XYZ_ROTVEC"):
        make_spec(bad).embodiment("libero_panda")


def test_widths_are_checked(make_spec):
    with pytest.raises(EmbodimentError, match=r"normalised state width 14 exceeds max_state_dim 12"):
        make_spec(lambda kw, st, ids: kw.update(max_state_dim=12)).embodiment("unitree_g1")


def test_relative_eef_needs_matching_reference_state(make_spec):
    def edit(kw, st, ids):
        for name, values in st["libero_panda"]["state"]["eef_pose"].items():
            st["libero_panda"]["state"]["eef_pose"][name] = values[:7]

    with pytest.raises(EmbodimentError, match=r"needs reference state 'eef_pose' of the same width, got 7"):
        make_spec(edit).embodiment("libero_panda")


def test_file_errors(tmp_path, eagle_dir, synthetic_dir):
    with pytest.raises(CheckpointError, match=r"processor_config.json not found"):
        load_processor_spec(tmp_path)
    (tmp_path / "processor_config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"processor_config.json is not valid JSON"):
        load_processor_spec(tmp_path)
    (tmp_path / "processor_config.json").write_bytes((eagle_dir / "processor_config.json").read_bytes())
    (tmp_path / "statistics.json").write_text("{}")
    with pytest.raises(CheckpointError, match=r"processor_class is 'Eagle3_VLProcessor', expected 'Gr00tN1d6Processor'"):
        load_processor_spec(tmp_path)
    config = json.loads((synthetic_dir / "processor_config.json").read_text())
    config["processor_kwargs"]["use_albumentations"] = False
    (tmp_path / "processor_config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"use_albumentations is false"):
        load_processor_spec(tmp_path)


@pytest.mark.parametrize("name, content, match", [
    ("statistics.json", "[" * 100_000, "nests deeper than 64 levels"),
    ("statistics.json", "[]", "holds a JSON list, expected an object"),
    ("processor_config.json", b"\xff\xfe{}", "cannot read GR00T processor file"),
])
def test_processor_files_are_read_bounded_and_typed(tmp_path, synthetic_dir, name, content, match):
    """issue 17, item 11: a nesting bomb or a wrong top-level type is one line, not a RecursionError/TypeError."""
    for file in ("processor_config.json", "statistics.json", "embodiment_id.json"):
        if (synthetic_dir / file).exists():
            (tmp_path / file).write_bytes((synthetic_dir / file).read_bytes())
    target = tmp_path / name
    target.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(CheckpointError, match=match):
        load_processor_spec(tmp_path)
