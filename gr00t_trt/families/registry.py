"""The known model families, and how a checkpoint or an export names its own.

A checkpoint says which family it is in config.json's ``model_type``; an export records the family's name
in its manifest (``family``), and a manifest without one predates N1.7 and is N1.6.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..base.errors import ConfigError, ManifestError
from ..base.files import read_json
from .family import ModelFamily

N16 = ModelFamily(
    name="n1.6",
    model_type="Gr00tN1d6",
    title="GR00T N1.6",
    hub_id="nvidia/GR00T-N1.6-3B",
    runtime_module="gr00t_trt.families.n16.runtime",
    export_module="gr00t_trt.families.n16.export.face",
    demo_embodiment="libero_panda",
    roofline_module="gr00t_trt.families.n16.roofline",
)

N17 = ModelFamily(
    name="n1.7",
    model_type="Gr00tN1d7",
    title="GR00T N1.7",
    hub_id="nvidia/GR00T-N1.7-3B",
    runtime_module="gr00t_trt.families.n17.runtime",
    export_module="gr00t_trt.families.n17.export.face",
    demo_embodiment="libero_sim",
    roofline_module="gr00t_trt.families.n17.roofline",
    feature_view="standardised",  # pre-norm features (spec §3.6): compared as VLLN sees them
)

FAMILIES: tuple[ModelFamily, ...] = (N16, N17)
#: the family of a manifest that names none (every export written before families existed)
DEFAULT_FAMILY = N16


def family_named(name: str) -> ModelFamily:
    """The family a user or a manifest names ("n1.6"), or a one-line error listing the known ones."""
    for family in FAMILIES:
        if family.name == name:
            return family
    raise ConfigError(f"unknown model family {name!r} — known: {', '.join(f.name for f in FAMILIES)}")


def family_of_config(config: dict[str, Any], source: str = "config.json") -> ModelFamily:
    """The family whose ``model_type`` a checkpoint's config.json declares."""
    model_type = config.get("model_type") if isinstance(config, dict) else None
    for family in FAMILIES:
        if family.model_type == model_type:
            return family
    known = ", ".join(f"{f.model_type} ({f.title})" for f in FAMILIES)
    raise ConfigError(f"{source}: model_type {model_type!r} is not a GR00T release gr00t-trt supports — expected {known}")


def family_of_checkpoint(folder: str | Path) -> ModelFamily:
    """Read a checkpoint folder's config.json (bounded) and name its family."""
    path = Path(folder) / "config.json"
    return family_of_config(read_json(path, "checkpoint config", ConfigError, expect=dict), str(path))


def family_of_manifest(data: dict[str, Any], source: str = "manifest.json") -> ModelFamily:
    """The family an export's manifest records in ``family``; none recorded means N1.6."""
    name = data.get("family") if isinstance(data, dict) else None
    if name is None:
        return DEFAULT_FAMILY
    if not isinstance(name, str):
        raise ManifestError(f"{source}: family is a {type(name).__name__}, expected a family name such as 'n1.6'")
    try:
        return family_named(name)
    except ConfigError as exc:
        raise ManifestError(f"{source}: {exc}") from None
