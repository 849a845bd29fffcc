"""What a model family declares, and the two faces it shows: the runtime's (torch-free) and the export's.

A family (N1.6, N1.7, ...) is one ``ModelFamily`` value. Everything that differs between GR00T releases
sits behind it, so the runtime, export driver, verify, bench, build, serve and CLI are written once against
these two protocols and never ask which family they hold (the Optimum/transformers ``model_type`` registry
idea, STYLE.md).

The two faces are modules named by dotted path and imported on first use: a robot that only runs an
export imports ``runtime`` (numpy, no torch), a workstation that exports imports ``export`` too.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol


class FamilyRuntime(Protocol):
    """The torch-free face: the export contract and the host-side processing of one family."""

    GRAPH_SPECS: Mapping[str, Any]  # kind -> graphs.GraphSpec: every graph's I/O, declared as data
    DIMS: Mapping[str, Any]  # name -> graphs.DimSpec: which dims are dynamic and how they are bounded
    CONTROL_STEP: tuple[Any, ...]  # dataflow.Stage: which graph runs when, fed from where

    def make_preprocessor(self, folder: Path, manifest: Any, **options: Any) -> Any:
        """Observation → model inputs and normalised actions → physical ones, from an export folder."""


class FamilyExport(Protocol):
    """The PyTorch face: reading checkpoints, the faithful reference, and the graphs' export wrappers."""

    FP8_PLAN: Mapping[str, Any]  # per-graph fp8 Q/DQ plan (which GEMMs are quantised)
    INT8_PLAN: Mapping[str, Any]  # per-graph int8 W8A8 Q/DQ plan (which GEMMs are quantised)

    def read_config(self, folder: Path) -> Any:
        """The checkpoint's config.json as the family's config object (one-line ConfigError otherwise)."""

    def preset_config(self, name: str) -> Any:
        """The config of a synthetic preset (tiny, small, full)."""

    def expected_layout(self, config: Any) -> dict[str, tuple[int, ...]]:
        """Every tensor key the checkpoint must hold, with its shape (strict key accounting)."""

    def make_checkpoint(self, out_dir: str | Path, preset: str, **options: Any) -> Path:
        """A synthetic checkpoint with the real file layout, key names and sidecar files."""

    def load_reference(self, checkpoint: Any, manifest: Any, export_dir: Any) -> Any:
        """The unoptimised PyTorch model that verify and the preflight compare against."""

    def graph_modules(self, model: Any, config: Any, image_sizes: Any, slots: Any, kinds: Any = None) -> dict:
        """kind -> (graph name, torch module to trace, its static dims)."""


@dataclass(frozen=True)
class ModelFamily:
    """One GR00T release: how to recognise its checkpoints and where its two faces live."""

    name: str  # what users type and manifests record: "n1.6"
    model_type: str  # config.json ``model_type`` of its checkpoints: "Gr00tN1d6"
    title: str  # for people: "GR00T N1.6"
    hub_id: str  # the base checkpoint on the Hugging Face Hub
    runtime_module: str  # dotted path of a module satisfying FamilyRuntime
    export_module: str  # dotted path of a module satisfying FamilyExport

    def runtime(self) -> FamilyRuntime:
        return _checked(self.runtime_module, FamilyRuntime, self)

    def export(self) -> FamilyExport:
        return _checked(self.export_module, FamilyExport, self)


def required_names(protocol: type) -> tuple[str, ...]:
    """The names a face must define: the protocol's annotated constants and its methods."""
    methods = [name for name, value in vars(protocol).items() if callable(value) and not name.startswith("_")]
    return (*protocol.__annotations__, *methods)


def _checked(path: str, protocol: type, family: ModelFamily) -> Any:
    module: ModuleType = importlib.import_module(path)
    missing = [name for name in required_names(protocol) if not hasattr(module, name)]
    if missing:
        raise TypeError(f"{path} does not declare {family.title}'s {protocol.__name__}: missing {', '.join(missing)}")
    return module
