"""N1.7's processor files, read with N1.6's parser: the formats are the same (spec §2.6), only the
processor class, the built-in projector ids (spec §6.2) and the ``letter_box_transform`` flag differ."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

from ....base.errors import CheckpointError
from ....base.files import read_json
from ....processing.modality import PROCESSOR_CONFIG_FILE, ProcessorSpec, load_processor_spec

N17_PROCESSOR_CLASS = "Gr00tN1d7Processor"

#: Isaac-GR00T N1.7's built-in tag -> projector index; embodiment_id.json entries win over it. Not
#: compatible with N1.6's ids (there 24 is behavior_r1_pro).
N17_EMBODIMENT_IDS = MappingProxyType(
    {
        "oxe_droid_relative_eef_relative_joint": 24,
        "xdof_relative_eef_relative_joint": 27,
        "xdof_relative_eef_relative_joint_subtask": 27,
        "real_g1_relative_eef_relative_joints": 25,
        "real_r1_pro_sharpa_relative_eef": 26,
        "real_r1_pro_sharpa_relative_eef_human": 26,
        "real_r1_pro_sharpa_relative_eef_maxinsights": 26,
        "real_r1_pro_sharpa_relative_eef_mecka": 26,
        "unitree_g1_full_body_with_waist_height_nav_cmd": 25,
        "unitree_g1_sonic": 11,
        "unitree_g1_sonic_3views": 11,
        "simpler_env_google": 0,
        "simpler_env_widowx": 1,
        "libero_sim": 2,
        "new_embodiment": 10,
        "robocasa_panda_omron": 10,
        "robocasa_gr1_tabletop": 10,
    }
)


def load_n17_processor_spec(folder: str | Path) -> ProcessorSpec:
    """processor_config.json (Gr00tN1d7Processor) + statistics.json (+ embodiment_id.json) of a folder."""
    return load_processor_spec(folder, processor_class=N17_PROCESSOR_CLASS, builtin_ids=N17_EMBODIMENT_IDS)


def read_letter_box(folder: str | Path) -> bool:
    """processor_kwargs.letter_box_transform (absent before the flag existed: false, as the newer upstream
    and the public checkpoints; spec §4.1, §9 item 3)."""
    path = Path(folder) / PROCESSOR_CONFIG_FILE
    config = read_json(path, "processor config", CheckpointError, expect=dict)
    kwargs = config.get("processor_kwargs")
    value = kwargs.get("letter_box_transform", False) if isinstance(kwargs, dict) else False
    if not isinstance(value, bool):
        raise CheckpointError(f"{path}: letter_box_transform must be true or false, got {value!r}")
    return value
