"""GR00T N1.6's PyTorch face (FamilyExport): config, checkpoint layout, synthetic checkpoints, the
faithful reference and the graphs' export wrappers — the existing N1.6 modules, named in one place."""

from __future__ import annotations

from pathlib import Path

from ...export.graph_modules import graph_modules
from ...model.checkpoint import expected_layout
from ...model.config import Gr00tConfig
from ...model.presets import preset_config
from ...model.reference import load_reference
from ...model.synthetic import make_checkpoint
from .fp8_plan import FP8_PLAN
from .int8_plan import INT8_PLAN

__all__ = [
    "FP8_PLAN", "INT8_PLAN", "expected_layout", "graph_modules", "load_reference", "make_checkpoint", "preset_config",
    "read_config",
]


def read_config(folder: Path) -> Gr00tConfig:
    """An N1.6 checkpoint's config.json."""
    return Gr00tConfig.from_file(Path(folder) / "config.json")
