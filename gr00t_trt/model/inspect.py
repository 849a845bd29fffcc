"""``gr00t-trt inspect``: what a checkpoint holds, read from file headers and JSON only.

No weight is read: safetensors headers give every tensor's name, dtype and shape (for a Hub id they
are fetched by range requests), so inspecting the 3B checkpoint costs kilobytes. The report checks the
layout against the model of the checkpoint's own config.json, counts parameters per component, shows
the dtype mix and the embodiments, and estimates the size of the engines an export would build.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..base.errors import CheckpointError, Gr00tTrtError
from ..base.files import read_json
from .checkpoint import LayoutCheck, resolve_checkpoint_headers


@dataclass(frozen=True)
class ComponentCount:
    """Parameters of one component (or DiT sub-row, ``parent`` = "DiT")."""

    name: str
    params: int
    tensors: int
    note: str = ""
    parent: str | None = None
    unused: bool = False


@dataclass(frozen=True)
class EngineEstimate:
    """Estimated weight bytes of one group of engines at fp16 and fp8."""

    group: str
    fp16_bytes: int
    fp8_bytes: int


@dataclass
class InspectReport:
    """Everything ``inspect`` found; ``rows()`` and ``summary_lines()`` are what the CLI prints."""

    checkpoint: str
    folder: str
    config: Any  # the family's config object
    num_tensors: int
    weight_bytes: int
    components: list[ComponentCount]
    total_params: int
    total_params_without_lm_head: int
    dtypes: dict[str, tuple[int, int]]  # safetensors dtype -> (tensors, params)
    layout: LayoutCheck
    embodiment_ids: dict[str, int]
    embodiment_id_source: dict[str, str]  # tag -> "embodiment_id.json" | "built-in"
    modality_configs: dict[str, dict[str, Any]]
    engines: list[EngineEstimate]
    notes: list[str] = field(default_factory=list)

    @property
    def configured_embodiments(self) -> list[str]:
        """Tags with a modality config in this checkpoint: the ones export and run can use (the id
        table also names tags of other robots that this checkpoint was not fine-tuned for)."""
        return sorted(self.modality_configs, key=lambda tag: (self.embodiment_ids.get(tag, 1 << 30), tag))

    def component(self, name: str, parent: str | None = None) -> ComponentCount:
        for c in self.components:
            if c.name == name and c.parent == parent:
                return c
        raise KeyError(name)

    def rows(self) -> list[tuple[str, int, str]]:
        """(component, parameters, note) rows; DiT sub-rows are indented, totals last."""
        rows = []
        for c in self.components:
            name = f"  – {c.name}" if c.parent else c.name
            note = c.note + (f" ({c.tensors} tensors)" if c.tensors else "")
            rows.append((name, c.params, note))
        rows.append(("total without lm_head", self.total_params_without_lm_head, ""))
        rows.append(
            (
                "total",
                self.total_params,
                f"{self.num_tensors} tensors, {self.weight_bytes / 1e9:.3f} GB stored",
            )
        )
        return rows

    def summary_lines(self) -> list[str]:
        """Layout verdict, dtype mix, embodiments, engine estimates, notes — one line each."""
        lines = []
        if self.layout.ok:
            skipped = (
                f"; skipped known-unused: {len(self.layout.skipped)} tensors" if self.layout.skipped else ""
            )
            lines.append(f"layout: OK — every tensor of the model is present with the right shape{skipped}")
        else:
            lines.append(f"layout: MISMATCH — {self.layout.problems()}")
        mix = ", ".join(f"{d}: {n} tensors / {p:,} params" for d, (n, p) in sorted(self.dtypes.items()))
        lines.append(f"dtypes: {mix}")
        configured = self.configured_embodiments
        if configured:
            shown = ", ".join(f"{tag} (id {self.embodiment_ids.get(tag, '?')})" for tag in configured)
            lines.append(f"embodiments configured in this checkpoint (usable with --embodiment): {shown}")
        else:
            lines.append("embodiments configured in this checkpoint: none (no modality configs in processor_config.json)")
        others = [(tag, i) for tag, i in self.embodiment_ids.items() if tag not in configured]
        if others:
            ids = ", ".join(
                f"{tag}={i}{'' if self.embodiment_id_source[tag] != 'built-in' else '*'}"
                for tag, i in sorted(others, key=lambda kv: kv[1])
            )
            lines.append(f"other known embodiment ids, NOT configured here (* = the release's built-in map): {ids}")
        for tag, cfg in self.modality_configs.items():
            lines.append(
                f"embodiment {tag}: video {cfg['video']}, state {len(cfg['state'])} keys, "
                f"action {len(cfg['action'])} keys, horizon {cfg['action_horizon']}"
            )
        for e in self.engines:
            lines.append(
                f"engine estimate {e.group}: fp16 {e.fp16_bytes / 1e9:.3f} GB, fp8 {e.fp8_bytes / 1e9:.3f} GB"
            )
        lines.extend(f"note: {n}" for n in self.notes)
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "folder": self.folder,
            "num_tensors": self.num_tensors,
            "weight_bytes": self.weight_bytes,
            "components": [
                {
                    "name": c.name,
                    "parent": c.parent,
                    "params": c.params,
                    "tensors": c.tensors,
                    "unused": c.unused,
                }
                for c in self.components
            ],
            "total_params": self.total_params,
            "total_params_without_lm_head": self.total_params_without_lm_head,
            "dtypes": {d: {"tensors": n, "params": p} for d, (n, p) in self.dtypes.items()},
            "layout": self.layout.to_dict(),
            "configured_embodiments": self.configured_embodiments,
            "embodiment_ids": self.embodiment_ids,
            "embodiment_id_source": self.embodiment_id_source,
            "modality_configs": self.modality_configs,
            "engine_estimates": {
                e.group: {"fp16_bytes": e.fp16_bytes, "fp8_bytes": e.fp8_bytes} for e in self.engines
            },
            "notes": self.notes,
            "config": self.config.to_dict(),
        }


# ---------------------------------------------------------------------- counting
# ---------------------------------------------------------------------- embodiments
def read_embodiments(
    folder: Path, builtin_ids: Mapping[str, int],
) -> tuple[dict[str, int], dict[str, str], dict[str, dict[str, Any]], list[str]]:
    """embodiment_id.json merged over the family's built-in map, and a short summary of each modality
    config in processor_config.json; problems become notes (inspect never fails on them)."""
    from ..processing.modality import EMBODIMENT_ID_FILE, PROCESSOR_CONFIG_FILE

    notes: list[str] = []
    ids = dict(builtin_ids)
    source = dict.fromkeys(ids, "built-in")
    raw_ids = _read_json(folder / EMBODIMENT_ID_FILE, notes)
    if isinstance(raw_ids, dict):
        for tag, value in raw_ids.items():
            if isinstance(value, int) and not isinstance(value, bool):
                ids[tag] = value
                source[tag] = EMBODIMENT_ID_FILE
            else:
                notes.append(f"{EMBODIMENT_ID_FILE}: id of {tag!r} is {value!r}, expected an integer")
    elif raw_ids is not None:
        notes.append(f"{EMBODIMENT_ID_FILE}: expected an object of tag -> id")
    modality: dict[str, dict[str, Any]] = {}
    processor = _read_json(folder / PROCESSOR_CONFIG_FILE, notes)
    configs = (
        (processor or {}).get("processor_kwargs", {}).get("modality_configs")
        if isinstance(processor, dict)
        else None
    )
    if isinstance(configs, dict):
        for tag, cfg in configs.items():
            if not isinstance(cfg, dict):
                notes.append(f"{PROCESSOR_CONFIG_FILE}: modality config of {tag!r} is not an object")
                continue
            modality[tag] = {
                "id": ids.get(tag),
                "video": _keys(cfg, "video"),
                "state": _keys(cfg, "state"),
                "action": _keys(cfg, "action"),
                "action_horizon": len((cfg.get("action") or {}).get("delta_indices") or []),
            }
            if tag not in ids:
                notes.append(
                    f"embodiment {tag!r} has a modality config but no id in {EMBODIMENT_ID_FILE} or the built-in map"
                )
    elif processor is not None:
        notes.append(f"{PROCESSOR_CONFIG_FILE}: no processor_kwargs.modality_configs object")
    return ids, source, modality, notes


def _keys(cfg: dict, modality: str) -> list[str]:
    section = cfg.get(modality) or {}
    keys = section.get("modality_keys") if isinstance(section, dict) else None
    return [str(k) for k in keys] if isinstance(keys, list) else []


def _read_json(path: Path, notes: list[str]) -> Any:
    if not path.is_file():
        notes.append(f"{path.name} not found")
        return None
    try:
        return read_json(path, path.name, expect=dict)
    except Gr00tTrtError as exc:
        notes.append(str(exc))
        return None


# ---------------------------------------------------------------------- entry point
def inspect_checkpoint(checkpoint: str | Path) -> InspectReport:
    """Inspect a checkpoint folder or Hub id from headers and JSON only (no weights in memory); the
    model family (config.json's ``model_type``) says which layout, components and ids to check against."""
    from ..families.registry import family_of_checkpoint

    folder, index = resolve_checkpoint_headers(checkpoint)
    face = family_of_checkpoint(folder).export()
    config = face.read_config(folder)
    if not index:
        raise CheckpointError(f"checkpoint {checkpoint} holds no tensors")
    components = face.count_components(index, config)
    total = sum(info.numel for info in index.values())
    lm_head = sum(c.params for c in components if c.name == "lm_head")  # the family names its own
    dtypes: dict[str, tuple[int, int]] = {}
    for info in index.values():
        n, p = dtypes.get(info.dtype, (0, 0))
        dtypes[info.dtype] = (n + 1, p + info.numel)
    ids, id_source, modality, notes = read_embodiments(folder, face.BUILTIN_EMBODIMENT_IDS)
    return InspectReport(
        checkpoint=str(checkpoint),
        folder=str(folder),
        config=config,
        num_tensors=len(index),
        weight_bytes=sum(info.nbytes for info in index.values()),
        components=components,
        total_params=total,
        total_params_without_lm_head=total - lm_head,
        dtypes=dtypes,
        layout=face.compare_layout(index, config),
        embodiment_ids=ids,
        embodiment_id_source=id_source,
        modality_configs=modality,
        engines=face.estimate_engines(index, config),
        notes=notes,
    )
