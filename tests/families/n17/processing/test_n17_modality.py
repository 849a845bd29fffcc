"""N1.7 processor files: Gr00tN1d7Processor accepted (and N1.6's loader refusing it), N1.7's built-in
projector ids under embodiment_id.json, letter_box_transform, and from_dir end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gr00t_trt.base.errors import CheckpointError
from gr00t_trt.families.n16.presets import preset_config
from gr00t_trt.families.n16.processing.modality import load_processor_spec
from gr00t_trt.families.n16.synthetic_processor import write_processor_files
from gr00t_trt.families.n17.processing.feeds import N17HostProcessor
from gr00t_trt.families.n17.processing.modality import load_n17_processor_spec, read_letter_box

from .conftest import valid_state


def n17_files(folder, letter_box=None, with_ids=False):
    """N1.6's synthetic processor files turned into N1.7's: class name, tags renamed to N1.7 ones
    (unitree_g1_sonic: projector 11, N1.6's unitree_g1 is 8; libero_sim with two frames per view)."""
    write_processor_files(folder, preset_config("tiny"), seed=0)
    config = json.loads((folder / "processor_config.json").read_text())
    stats = json.loads((folder / "statistics.json").read_text())
    config["processor_class"] = "Gr00tN1d7Processor"
    kwargs = config["processor_kwargs"]
    kwargs["modality_configs"]["unitree_g1_sonic"] = kwargs["modality_configs"].pop("unitree_g1")
    stats["unitree_g1_sonic"] = stats.pop("unitree_g1")
    stats["unitree_g1_sonic"]["relative_action"]["__fingerprints__"] = {
        "sha": "abc"
    }  # newer trainers' sidecar
    kwargs["modality_configs"]["libero_sim"] = kwargs["modality_configs"].pop("libero_panda")
    stats["libero_sim"] = stats.pop("libero_panda")
    kwargs["modality_configs"]["libero_sim"]["video"]["delta_indices"] = [-15, 0]
    if letter_box is not None:
        kwargs["letter_box_transform"] = letter_box
    (folder / "processor_config.json").write_text(json.dumps(config))
    (folder / "statistics.json").write_text(json.dumps(stats))
    if not with_ids:
        (folder / "embodiment_id.json").unlink()
    return folder


def test_n17_files_and_builtin_ids(tmp_path):
    spec = load_n17_processor_spec(n17_files(tmp_path))
    assert spec.embodiment("unitree_g1_sonic").id == 11
    assert spec.embodiment_ids["oxe_droid_relative_eef_relative_joint"] == 24
    assert spec.embodiment("libero_sim").num_frames == 2 and spec.embodiment("libero_sim").id == 2
    assert not spec.unusable
    with pytest.raises(
        CheckpointError, match=r"processor_class is 'Gr00tN1d7Processor', expected 'Gr00tN1d6Processor'"
    ):
        load_processor_spec(tmp_path)


def test_embodiment_id_file_wins(tmp_path):
    folder = n17_files(tmp_path, with_ids=True)
    ids = json.loads((folder / "embodiment_id.json").read_text())
    ids["unitree_g1_sonic"] = 7
    (folder / "embodiment_id.json").write_text(json.dumps(ids))
    assert load_n17_processor_spec(folder).embodiment("unitree_g1_sonic").id == 7


def test_n16_files_are_refused(tmp_path):
    write_processor_files(tmp_path, preset_config("tiny"), seed=0)
    with pytest.raises(
        CheckpointError, match=r"processor_class is 'Gr00tN1d6Processor', expected 'Gr00tN1d7Processor'"
    ):
        load_n17_processor_spec(tmp_path)


@pytest.mark.parametrize(("flag", "expected"), [(None, False), (False, False), (True, True)])
def test_letter_box_flag(tmp_path, flag, expected):
    assert read_letter_box(n17_files(tmp_path, letter_box=flag)) is expected


def test_letter_box_flag_must_be_boolean(tmp_path):
    with pytest.raises(CheckpointError, match=r"letter_box_transform must be true or false, got 'yes'"):
        read_letter_box(n17_files(tmp_path, letter_box="yes"))


def test_from_dir(tmp_path, qwen_tokenizer):
    folder = n17_files(tmp_path, letter_box=True)
    processor = N17HostProcessor.from_dir(folder, qwen_tokenizer)
    emb = processor.spec.embodiment("libero_sim")
    obs = {
        "video": {v: np.zeros((1, 2, 180, 320, 3), np.uint8) for v in emb.video_keys},
        "state": valid_state(emb),
        "language": {emb.language_key: [["go"]]},
    }
    out = processor(obs, "libero_sim")
    assert [img.shape for img in out.images] == [(256, 256, 3)] * 4  # letterbox on: square
    assert out.input_ids.shape == (1, 269 + 1)
