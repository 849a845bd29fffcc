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

    CONTRACT: Any  # contract.dataflow.Contract: every graph's I/O, the dims and the control step, as data

    def make_preprocessor(self, folder: Path, manifest: Any, **options: Any) -> Any:
        """Observation → model inputs and normalised actions → physical ones, from an export folder."""

    def make_grids(self, folder: Path, manifest: Any, vision: Any) -> Any:
        """The vision graph's per-image-size inputs: a callable (input name, token rows, token cols) → array."""


class FamilyExport(Protocol):
    """The PyTorch face: reading checkpoints, the faithful reference, the graphs' export wrappers and the
    host-side pieces an export writes (tokenizer, manifest sections)."""

    FP8_PLAN: Mapping[str, Any]  # per-graph fp8 Q/DQ plan (which GEMMs are quantised)
    BUILTIN_EMBODIMENT_IDS: Mapping[str, int]  # the release's tag -> projector index (embodiment_id.json wins)
    INT8_PLAN: Mapping[str, Any]  # per-graph int8 W8A8 Q/DQ plan (which GEMMs are quantised)
    FP8_KEEP: Mapping[str, Any]  # GEMMs (module paths with indices) kept high precision although planned
    INT8_KEEP: Mapping[str, Any]

    def read_config(self, folder: Path) -> Any:
        """The checkpoint's config.json as the family's config object (one-line ConfigError otherwise)."""

    def preset_config(self, name: str) -> Any:
        """The config of a synthetic preset (tiny, small, full)."""

    def expected_layout(self, config: Any) -> dict[str, tuple[int, ...]]:
        """Every tensor key the checkpoint must hold, with its shape (strict key accounting)."""

    def make_checkpoint(self, out_dir: str | Path, preset: str, **options: Any) -> Path:
        """A synthetic checkpoint with the real file layout, key names and sidecar files."""

    def open_model(self, checkpoint: Any, dtype: Any) -> tuple[Any, Any, Path]:
        """(LazyModel on the meta device, config, folder): every tensor accounted for, none read."""

    def load_reference(self, checkpoint: Any, manifest: Any, export_dir: Any) -> Any:
        """(model, config): the unoptimised PyTorch model that verify and the preflight compare against."""

    def reference_case(self, model: Any, inputs: Any, noise: Any) -> Any:
        """One reference control step on preprocessed inputs → verification.reference_case.ReferenceCase."""

    def timed_reference(self, model: Any, inputs: Any, noise: Any) -> tuple[dict[str, float], Any]:
        """({vision, backbone, action head}: seconds, normalised actions) of one reference step (bench)."""

    def static_dims(self, config: Any) -> dict[str, int]:
        """Every static dim of the family's contract, sized from a config."""

    def graph_modules(self, model: Any, config: Any, slots: Any, kinds: Any = None) -> dict:
        """graph name -> (kind, torch module to trace, its own static dims)."""

    def segment_modules(self, lazy: Any, config: Any, kinds: Any, slots: Any) -> dict:
        """``graph_modules`` of one dataflow segment, with just their weights read from the checkpoint."""

    def example_step(self, config: Any, slots: Any) -> Any:
        """The example control step the export traces and validates every graph on (export.examples)."""

    def processor_spec(self, folder: Path) -> Any:
        """The checkpoint's processor files (modality configs, statistics, embodiment ids)."""

    def processed_image_size(self, height: int, width: int, processor: Any) -> tuple[int, int]:
        """The size a camera frame of height x width has after the family's image chain."""

    def resolve_tokenizer(self, folder: Path, override: Any, config: Any) -> Any:
        """The family's tokenizer for a checkpoint (beside it, or ``override``)."""

    def save_tokenizer(self, tokenizer: Any, folder: Path) -> Any:
        """Write the tokenizer files the runtime reads into an export folder."""

    def host_processor(self, processor: Any, tokenizer: Any, config: Any) -> Any:
        """Observation -> model inputs for the export's calibration observations."""

    def manifest_tokens(self, config: Any, tokenizer: Any) -> dict[str, int]:
        """The manifest's ``tokens`` (image token, pad token, ...)."""

    def vision_declaration(self, config: Any) -> dict[str, Any]:
        """The manifest's ``vision`` section: the per-size inputs and the table file they come from."""

    def count_components(self, index: Any, config: Any) -> list:
        """``inspect``'s parameter rows per component of a stored checkpoint (headers only)."""

    def compare_layout(self, index: Any, config: Any) -> Any:
        """Every stored tensor accounted for against the config's model (``LayoutCheck``)."""

    def estimate_engines(self, index: Any, config: Any) -> list:
        """``inspect``'s engine weight estimates per graph group."""


@dataclass(frozen=True)
class ModelFamily:
    """One GR00T release: how to recognise its checkpoints and where its two faces live."""

    name: str  # what users type and manifests record: "n1.6"
    model_type: str  # config.json ``model_type`` of its checkpoints: "Gr00tN1d6"
    title: str  # for people: "GR00T N1.6"
    hub_id: str  # the base checkpoint on the Hugging Face Hub
    runtime_module: str  # dotted path of a module satisfying FamilyRuntime
    export_module: str  # dotted path of a module satisfying FamilyExport
    demo_embodiment: str  # the embodiment of its synthetic checkpoints that ``demo`` runs
    #: dotted path of a module satisfying ``bench.roofline.RooflineModel``: its graphs' FLOPs and bytes
    #: (stdlib only, like the runtime face it needs no torch)
    roofline_module: str
    #: how verify and the preflight compare its backbone features against the reference
    #: (``verification.parity.FEATURE_VIEWS``): "identity" when they are already at unit scale (the output of
    #: a norm), "standardised" when they are read before the final norm — then they are compared as the
    #: action head's VLLN sees them, the scale §7's absolute bounds were written for
    feature_view: str = "identity"

    def runtime(self) -> FamilyRuntime:
        return _checked(self.runtime_module, FamilyRuntime, self)

    def export(self) -> FamilyExport:
        return _checked(self.export_module, FamilyExport, self)

    def roofline(self) -> Any:
        """The family's ``bench.roofline.RooflineModel`` (what ``bench`` and ``bench --model-only`` count)."""
        from ..bench.roofline import RooflineModel

        return _checked(self.roofline_module, RooflineModel, self)


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
