"""GR00T N1.6's processor files: its processor class and built-in embodiment ids, read with the shared
parser (``processing.modality``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ....processing import modality
from ....processing.modality import ProcessorSpec

PROCESSOR_CLASS = "Gr00tN1d6Processor"

#: Projector index of each tag built into N1.6's processor; embodiment_id.json entries win over it.
BUILTIN_EMBODIMENT_IDS: Mapping[str, int] = MappingProxyType(
    {
        "oxe_google": 0,
        "oxe_widowx": 1,
        "libero_panda": 2,
        "unitree_g1": 8,
        "new_embodiment": 10,
        "robocasa_panda_omron": 13,
        "oxe_droid": 16,
        "gr1": 20,
        "behavior_r1_pro": 24,
    }
)


def load_processor_spec(folder: str | Path) -> ProcessorSpec:
    """processor_config.json + statistics.json (+ embodiment_id.json) of an N1.6 checkpoint or export."""
    return modality.load_processor_spec(folder, processor_class=PROCESSOR_CLASS, builtin_ids=BUILTIN_EMBODIMENT_IDS)


def parse_processor_spec(config: Mapping[str, Any], statistics: Mapping[str, Any],
                         embodiment_ids: Mapping[str, int] | None = None, source: str = "processor files") -> ProcessorSpec:
    """An N1.6 ProcessorSpec from the three files' JSON values."""
    return modality.parse_processor_spec(config, statistics, embodiment_ids, source, processor_class=PROCESSOR_CLASS,
                                         builtin_ids=BUILTIN_EMBODIMENT_IDS)
