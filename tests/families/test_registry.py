"""Model families: every registered family declares both faces, and checkpoints/exports name their own."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import types
from dataclasses import fields

import pytest

from gr00t_trt.base.errors import ConfigError, ManifestError
from gr00t_trt.families import family as family_module
from gr00t_trt.families.family import FamilyExport, FamilyRuntime, ModelFamily, required_names
from gr00t_trt.families.registry import (
    DEFAULT_FAMILY,
    FAMILIES,
    family_named,
    family_of_checkpoint,
    family_of_config,
    family_of_manifest,
)
from gr00t_trt.model.config import ActionHeadConfig


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_every_registered_family_declares_both_faces(family):
    runtime, export = family.runtime(), family.export()
    for name in required_names(FamilyRuntime):
        assert hasattr(runtime, name), f"{family.runtime_module} lacks {name}"
    for name in required_names(FamilyExport):
        assert hasattr(export, name), f"{family.export_module} lacks {name}"
    assert runtime.CONTRACT.family == family.name
    kinds = {stage.kind for stage in runtime.CONTRACT.control_step}
    assert kinds == set(runtime.CONTRACT.graphs), "every graph declared is run, every stage declared"


def test_a_face_missing_a_name_is_refused_naming_it(monkeypatch):
    face = types.ModuleType("fake_runtime")
    face.CONTRACT = None
    monkeypatch.setitem(sys.modules, "fake_runtime", face)
    fake = ModelFamily("x", "X", "GR00T X", "nvidia/X", "fake_runtime", "fake_runtime", "x", "fake_runtime")
    with pytest.raises(TypeError, match="missing make_preprocessor, make_grids"):
        fake.runtime()


def test_required_names_list_constants_and_methods():
    assert required_names(FamilyRuntime) == ("CONTRACT", "make_preprocessor", "make_grids")
    assert "read_config" in required_names(FamilyExport) and "FP8_PLAN" in required_names(FamilyExport)
    assert family_module.required_names is required_names


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_the_runtime_face_imports_without_torch(family):
    code = textwrap.dedent(
        f"""
        import sys
        for name in ("torch", "transformers", "onnx"):
            sys.modules[name] = None
        from gr00t_trt.families.registry import family_named
        family_named({family.name!r}).runtime()
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_families_are_recognised_by_model_type_and_name():
    for family in FAMILIES:
        assert family_of_config({"model_type": family.model_type}) is family
        assert family_named(family.name) is family
    assert len({f.model_type for f in FAMILIES}) == len({f.name for f in FAMILIES}) == len(FAMILIES)


@pytest.mark.parametrize("config", [{"model_type": "Gr00tN1d5"}, {}, []])
def test_an_unknown_model_type_is_one_line_naming_the_known_ones(config):
    with pytest.raises(ConfigError, match="Gr00tN1d6") as info:
        family_of_config(config)
    assert "\n" not in str(info.value)


def test_a_synthetic_checkpoint_is_recognised_from_its_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "Gr00tN1d6", "architectures": ["Gr00tN1d6"]}))
    assert family_of_checkpoint(tmp_path).name == "n1.6"
    (tmp_path / "config.json").write_text("[" * 10_000)
    with pytest.raises(ConfigError, match="nests deeper"):
        family_of_checkpoint(tmp_path)


def test_a_manifest_without_a_family_is_n16_and_a_bad_one_is_refused():
    assert family_of_manifest({"format": "gr00t-trt-export"}) is DEFAULT_FAMILY
    assert DEFAULT_FAMILY.model_type == "Gr00tN1d6"
    assert family_of_manifest({"family": "n1.6"}).name == "n1.6"
    with pytest.raises(ManifestError, match="unknown model family 'n9'"):
        family_of_manifest({"family": "n9"})
    with pytest.raises(ManifestError, match="expected a family name"):
        family_of_manifest({"family": 16})


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_every_family_reads_writes_and_checks_the_action_head_fields_one_way(family, tmp_path):
    """The action head's fields are declared once (``ActionHeadConfig``): each family's config has them,
    writes them under the original's config.json names, reads them back and refuses what the head cannot run."""
    config = family.export().preset_config("tiny")
    assert isinstance(config, ActionHeadConfig)
    data = json.loads(json.dumps(config.to_dict()))
    assert {f.name for f in fields(ActionHeadConfig)} - {"dit"} | {"diffusion_model_cfg"} <= set(data)
    (tmp_path / "config.json").write_text(json.dumps(data))
    assert family.export().read_config(tmp_path) == config
    assert config.denoising_timesteps == [0, 250, 500, 750]
    (tmp_path / "config.json").write_text(json.dumps({**data, "max_seq_len": 3}))
    with pytest.raises(ConfigError, match=rf"unsupported {family.title} config — .*action_horizon \d+ > max_seq_len 3"):
        family.export().read_config(tmp_path)
