"""What each embodiment looks like: the checkpoint's processor_config.json, statistics.json and
embodiment_id.json parsed into frozen dataclasses.

A checkpoint folder and an export directory carry the same three files, so ``load_processor_spec``
reads either. Statistics come from the checkpoint and are never recomputed. Normalisation parameters
are resolved here exactly as Isaac-GR00T's state/action processor resolves them (percentiles,
relative-action statistics), so that ``state.py`` and ``actions.py`` only do arithmetic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from ..base.errors import CheckpointError, EmbodimentError
from ..base.files import read_json

PROCESSOR_CONFIG_FILE = "processor_config.json"
STATISTICS_FILE = "statistics.json"
EMBODIMENT_ID_FILE = "embodiment_id.json"
MODALITIES = ("video", "state", "action", "language")
_STAT_NAMES = ("min", "max", "mean", "std")


class ActionRep(Enum):
    """How an action key is expressed; only RELATIVE is converted when decoding."""

    RELATIVE = "relative"
    DELTA = "delta"
    ABSOLUTE = "absolute"


class ActionType(Enum):
    EEF = "eef"
    NON_EEF = "non_eef"


class ActionFormat(Enum):
    DEFAULT = "default"
    XYZ_ROT6D = "xyz+rot6d"
    XYZ_ROTVEC = "xyz+rotvec"


#: action width each EEF format requires (xyz + rotation)
EEF_FORMAT_DIMS = {ActionFormat.XYZ_ROT6D: 9, ActionFormat.XYZ_ROTVEC: 6}


@dataclass(frozen=True)
class ActionConfig:
    """One action key's representation; ``state_key`` is resolved (defaults to the action key)."""

    rep: ActionRep = ActionRep.ABSOLUTE
    type: ActionType = ActionType.NON_EEF
    format: ActionFormat = ActionFormat.DEFAULT
    state_key: str = ""


@dataclass(frozen=True, eq=False)
class NormParams:
    """Effective normalisation parameters of one key (float64, as statistics.json stores them).

    ``min``/``max`` already hold q01/q99 when the processor uses percentiles; for RELATIVE action keys
    they are the per-timestep ``relative_action`` arrays [H, dim]. ``dim`` is the key's width.
    """

    min: np.ndarray
    max: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    dim: int


@dataclass(frozen=True)
class ProcessorSettings:
    """Processor-wide values of processor_config.json (defaults: the original processor's own)."""

    shortest_image_edge: int | None = 512
    crop_fraction: float | None = 0.95
    image_target_size: tuple[int, int] | None = None
    image_crop_size: tuple[int, int] | None = None
    use_albumentations: bool = False
    formalize_language: bool = True
    max_state_dim: int = 29
    max_action_dim: int = 29
    max_action_horizon: int = 40
    apply_sincos_state_encoding: bool = False
    use_relative_action: bool = False
    use_percentiles: bool = False
    clip_outliers: bool = True
    model_name: str = "nvidia/Eagle-Block2A-2B-v2"

    @property
    def image_edge(self) -> int:
        """Short side the eval chain resizes to (falls back to image_target_size like GR00T)."""
        if self.shortest_image_edge is not None:
            return int(self.shortest_image_edge)
        return int(self.image_target_size[0])  # checked at load time

    @property
    def image_crop_fraction(self) -> float:
        if self.crop_fraction is not None:
            return float(self.crop_fraction)
        return self.image_crop_size[0] / self.image_target_size[0]  # checked at load time


@dataclass(frozen=True, eq=False)
class EmbodimentSpec:
    """One embodiment: its keys in model order, per-key widths and normalisation, and the processor
    settings that change its arithmetic (so state/action code needs nothing else)."""

    tag: str
    id: int
    video_keys: tuple[str, ...]
    video_delta_indices: tuple[int, ...]
    state_keys: tuple[str, ...]
    state_delta_indices: tuple[int, ...]
    action_keys: tuple[str, ...]
    action_delta_indices: tuple[int, ...]
    language_key: str
    #: state keys sin/cos-encoded (empty unless apply_sincos_state_encoding is on)
    sin_cos_keys: tuple[str, ...]
    state_mean_std_keys: tuple[str, ...]
    action_mean_std_keys: tuple[str, ...]
    action_configs: Mapping[str, ActionConfig]
    state_norm: Mapping[str, NormParams]
    action_norm: Mapping[str, NormParams]
    max_state_dim: int
    max_action_dim: int
    clip_outliers: bool = True
    use_relative_action: bool = False

    @property
    def action_horizon(self) -> int:
        return len(self.action_delta_indices)

    @property
    def num_frames(self) -> int:
        return len(self.video_delta_indices)

    @property
    def state_dims(self) -> dict[str, int]:
        return {k: self.state_norm[k].dim for k in self.state_keys}

    @property
    def action_dims(self) -> dict[str, int]:
        return {k: self.action_norm[k].dim for k in self.action_keys}

    @property
    def state_width(self) -> int:
        """Width of the normalised state before zero padding (sin/cos keys count twice)."""
        return sum(d * (2 if k in self.sin_cos_keys else 1) for k, d in self.state_dims.items())

    @property
    def action_width(self) -> int:
        return sum(self.action_dims.values())

    def is_relative(self, key: str) -> bool:
        """True when decoding must add the reference state to this action key."""
        return self.use_relative_action and self.action_configs[key].rep is ActionRep.RELATIVE


@dataclass(frozen=True, eq=False)
class ProcessorSpec:
    """All embodiments of a checkpoint or export; ``unusable`` says why a configured tag cannot run."""

    settings: ProcessorSettings
    embodiments: Mapping[str, EmbodimentSpec]
    embodiment_ids: Mapping[str, int]
    unusable: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    source: str = ""

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(self.embodiments)

    def embodiment(self, tag: str) -> EmbodimentSpec:
        """The spec of ``tag`` or an EmbodimentError that says what is known or missing."""
        if hasattr(tag, "value"):  # accept an EmbodimentTag-like enum
            tag = tag.value
        if tag in self.embodiments:
            return self.embodiments[tag]
        if tag in self.unusable:
            raise EmbodimentError(f"embodiment {tag!r} cannot be used: {self.unusable[tag]}")
        known = ", ".join(sorted(self.embodiments)) or "(none)"
        raise EmbodimentError(f"unknown embodiment {tag!r} — expected one of: {known} (from {self.source})")


# ------------------------------------------------------------------------------------------ loading
def load_processor_spec(
    folder: str | Path,
    *,
    processor_class: str,
    builtin_ids: Mapping[str, int],
) -> ProcessorSpec:
    """Read processor_config.json + statistics.json (+ embodiment_id.json) from a checkpoint folder
    or an export directory (the keywords as in ``parse_processor_spec``)."""
    folder = Path(folder)
    config = _read_json(folder / PROCESSOR_CONFIG_FILE, required=True)
    statistics = _read_json(folder / STATISTICS_FILE, required=True)
    ids = _read_json(folder / EMBODIMENT_ID_FILE, required=False)
    return parse_processor_spec(
        config, statistics, ids, source=str(folder), processor_class=processor_class, builtin_ids=builtin_ids
    )


def parse_processor_spec(
    config: Mapping[str, Any],
    statistics: Mapping[str, Any],
    embodiment_ids: Mapping[str, int] | None = None,
    source: str = "processor files",
    *,
    processor_class: str,
    builtin_ids: Mapping[str, int],
) -> ProcessorSpec:
    """Build a ProcessorSpec from the three files' JSON values (see ``load_processor_spec``).

    ``processor_class`` and ``builtin_ids`` (the tag -> projector map embodiment_id.json is merged over)
    are the model family's."""
    cfg_name = f"{source}/{PROCESSOR_CONFIG_FILE}"
    if not isinstance(config, Mapping):
        raise CheckpointError(f"{cfg_name}: expected a JSON object, got {type(config).__name__}")
    cls = config.get("processor_class", processor_class)
    if cls != processor_class:
        raise CheckpointError(
            f"{cfg_name}: processor_class is {cls!r}, expected {processor_class!r} — "
            "is this the backbone's folder, or a checkpoint of another GR00T version?"
        )
    kwargs = config.get("processor_kwargs")
    if not isinstance(kwargs, Mapping) or not isinstance(kwargs.get("modality_configs"), Mapping):
        raise CheckpointError(f"{cfg_name}: expected 'processor_kwargs' with a 'modality_configs' object")
    settings = _parse_settings(kwargs, cfg_name)
    if not isinstance(statistics, Mapping):
        raise CheckpointError(f"{source}/{STATISTICS_FILE}: expected a JSON object, got {type(statistics).__name__}")
    ids = dict(builtin_ids)
    if embodiment_ids is not None:
        if not isinstance(embodiment_ids, Mapping) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in embodiment_ids.values()
        ):
            raise CheckpointError(f"{source}/{EMBODIMENT_ID_FILE}: expected an object of tag -> integer id")
        ids.update(embodiment_ids)

    embodiments: dict[str, EmbodimentSpec] = {}
    unusable: dict[str, str] = {}
    for tag, modality_cfg in kwargs["modality_configs"].items():
        try:
            embodiments[tag] = _parse_embodiment(tag, modality_cfg, statistics.get(tag), ids, settings, source)
        except EmbodimentError as exc:
            unusable[tag] = str(exc)
    return ProcessorSpec(
        settings=settings,
        embodiments=MappingProxyType(embodiments),
        embodiment_ids=MappingProxyType(ids),
        unusable=MappingProxyType(unusable),
        source=source,
    )


def _read_json(path: Path, required: bool) -> Any:
    if not path.is_file():
        if not required:
            return None
        raise CheckpointError(
            f"{path} not found — expected GR00T N1.6 processor files (processor_config.json, statistics.json) "
            "in a checkpoint folder or export directory"
        )
    return read_json(path, "GR00T processor file", CheckpointError, expect=dict)


def _parse_settings(kwargs: Mapping[str, Any], cfg_name: str) -> ProcessorSettings:
    defaults = ProcessorSettings()
    values: dict[str, Any] = {}
    for name in defaults.__dataclass_fields__:
        if name in kwargs:
            value = kwargs[name]
            if name in ("image_target_size", "image_crop_size") and value is not None:
                value = tuple(int(v) for v in value)
            values[name] = value
    settings = ProcessorSettings(**values)
    if not settings.use_albumentations:
        raise CheckpointError(
            f"{cfg_name}: use_albumentations is false (or absent, whose default is false) — only the "
            "albumentations eval image chain of released N1.6 checkpoints is supported (expected true)"
        )
    if settings.shortest_image_edge is None and settings.image_target_size is None:
        raise CheckpointError(f"{cfg_name}: needs shortest_image_edge or image_target_size")
    if settings.crop_fraction is None and (settings.image_crop_size is None or settings.image_target_size is None):
        raise CheckpointError(f"{cfg_name}: needs crop_fraction or image_crop_size + image_target_size")
    if not 0.0 < settings.image_crop_fraction <= 1.0:
        raise CheckpointError(f"{cfg_name}: crop fraction {settings.image_crop_fraction} outside (0, 1]")
    return settings


def _enum(enum_type: type[Enum], raw: Any, what: str) -> Enum:
    """Enums are stored by name ("RELATIVE"); accept the value ("relative") too."""
    if isinstance(raw, str):
        if raw in enum_type.__members__:
            return enum_type[raw]
        for member in enum_type:
            if member.value == raw:
                return member
    choices = ", ".join(enum_type.__members__)
    raise EmbodimentError(f"{what} is {raw!r} — expected one of: {choices}")


def _str_list(raw: Any, what: str, allow_none: bool = True) -> tuple[str, ...]:
    if raw is None and allow_none:
        return ()
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        raise EmbodimentError(f"{what} must be a list of strings, got {raw!r}")
    return tuple(raw)


def _int_list(raw: Any, what: str) -> tuple[int, ...]:
    if not isinstance(raw, list) or not raw or not all(isinstance(v, int) for v in raw):
        raise EmbodimentError(f"{what} must be a non-empty list of integers, got {raw!r}")
    return tuple(raw)


def _parse_embodiment(
    tag: str,
    modality_cfg: Any,
    stats: Any,
    ids: Mapping[str, int],
    settings: ProcessorSettings,
    source: str,
) -> EmbodimentSpec:
    where = f"processor_config.json modality_configs[{tag!r}]"
    if not isinstance(modality_cfg, Mapping):
        raise EmbodimentError(f"{where} must be an object")
    missing = [m for m in MODALITIES if not isinstance(modality_cfg.get(m), Mapping)]
    if missing:
        raise EmbodimentError(f"{where} lacks the modalities {missing}")
    video, state, action, language = (modality_cfg[m] for m in MODALITIES)
    video_keys = _str_list(video.get("modality_keys"), f"{where}.video.modality_keys", allow_none=False)
    state_keys = _str_list(state.get("modality_keys"), f"{where}.state.modality_keys", allow_none=False)
    action_keys = _str_list(action.get("modality_keys"), f"{where}.action.modality_keys", allow_none=False)
    language_keys = _str_list(language.get("modality_keys"), f"{where}.language.modality_keys", allow_none=False)
    if len(language_keys) != 1:
        raise EmbodimentError(f"{where}.language needs exactly one key, got {list(language_keys)}")
    if not video_keys or not state_keys or not action_keys:
        raise EmbodimentError(f"{where} needs at least one video, state and action key")

    raw_action_cfgs = action.get("action_configs")
    if raw_action_cfgs is None:
        action_cfgs = {k: ActionConfig(state_key=k) for k in action_keys}
    else:
        if not isinstance(raw_action_cfgs, list) or len(raw_action_cfgs) != len(action_keys):
            raise EmbodimentError(
                f"{where}.action.action_configs must be a list of {len(action_keys)} entries (one per action key)"
            )
        action_cfgs = {}
        for key, raw in zip(action_keys, raw_action_cfgs, strict=True):
            what = f"{where} action {key!r}"
            if not isinstance(raw, Mapping):
                raise EmbodimentError(f"{what}: action config must be an object")
            action_cfgs[key] = ActionConfig(
                rep=_enum(ActionRep, raw.get("rep"), f"{what} rep"),
                type=_enum(ActionType, raw.get("type"), f"{what} type"),
                format=_enum(ActionFormat, raw.get("format", "DEFAULT"), f"{what} format"),
                state_key=raw.get("state_key") or key,
            )

    if tag not in ids:
        raise EmbodimentError(f"no embodiment id for {tag!r} in embodiment_id.json or the built-in map of the model family")
    if not isinstance(stats, Mapping):
        raise EmbodimentError(f"{source}/{STATISTICS_FILE} has no statistics for embodiment {tag!r}")

    state_norm = {k: _norm_params(stats, "state", k, tag, settings.use_percentiles, source) for k in state_keys}
    action_norm = {}
    for key in action_keys:
        params = _norm_params(stats, "action", key, tag, settings.use_percentiles, source)
        if settings.use_relative_action and action_cfgs[key].rep is ActionRep.RELATIVE:
            # N1.6 swaps in the relative statistics as stored (min/max, never q01/q99), keeping the width
            params = _norm_params(stats, "relative_action", key, tag, False, source, dim=params.dim)
        action_norm[key] = params

    sin_cos = _str_list(state.get("sin_cos_embedding_keys"), f"{where}.state.sin_cos_embedding_keys")
    spec = EmbodimentSpec(
        tag=tag,
        id=int(ids[tag]),
        video_keys=video_keys,
        video_delta_indices=_int_list(video.get("delta_indices"), f"{where}.video.delta_indices"),
        state_keys=state_keys,
        state_delta_indices=_int_list(state.get("delta_indices"), f"{where}.state.delta_indices"),
        action_keys=action_keys,
        action_delta_indices=_int_list(action.get("delta_indices"), f"{where}.action.delta_indices"),
        language_key=language_keys[0],
        sin_cos_keys=sin_cos if settings.apply_sincos_state_encoding else (),
        state_mean_std_keys=_str_list(state.get("mean_std_embedding_keys"), f"{where}.state.mean_std_embedding_keys"),
        action_mean_std_keys=_str_list(
            action.get("mean_std_embedding_keys"), f"{where}.action.mean_std_embedding_keys"
        ),
        action_configs=MappingProxyType(action_cfgs),
        state_norm=MappingProxyType(state_norm),
        action_norm=MappingProxyType(action_norm),
        max_state_dim=int(settings.max_state_dim),
        max_action_dim=int(settings.max_action_dim),
        clip_outliers=bool(settings.clip_outliers),
        use_relative_action=bool(settings.use_relative_action),
    )
    _check_embodiment(spec, settings)
    return spec


def _norm_params(
    stats: Mapping[str, Any],
    modality: str,
    key: str,
    tag: str,
    use_percentiles: bool,
    source: str,
    dim: int | None = None,
) -> NormParams:
    where = f"{source}/{STATISTICS_FILE}[{tag!r}][{modality!r}][{key!r}]"
    group = stats.get(modality)
    if not isinstance(group, Mapping) or not isinstance(group.get(key), Mapping):
        raise EmbodimentError(f"missing statistics for embodiment {tag!r} {modality} key {key!r} (expected {where})")
    entry = group[key]
    names = ("q01", "q99", "mean", "std") if use_percentiles else _STAT_NAMES
    absent = [n for n in names if n not in entry]
    if absent:
        raise EmbodimentError(f"{where} lacks the statistics {absent}")
    try:
        arrays = [np.asarray(entry[n], dtype=np.float64) for n in names]
    except (TypeError, ValueError):
        raise EmbodimentError(f"{where}: statistics must be (nested) lists of numbers") from None
    shape = arrays[0].shape
    if any(a.shape != shape for a in arrays) or len(shape) not in (1, 2) or shape[-1] == 0:
        raise EmbodimentError(
            f"{where}: statistics must share one shape [dim] or [horizon, dim], got {[a.shape for a in arrays]}"
        )
    if not all(np.isfinite(a).all() for a in arrays):
        raise EmbodimentError(f"{where}: statistics contain NaN or inf")
    width = shape[-1] if dim is None else dim
    if shape[-1] != width:
        raise EmbodimentError(f"{where}: width {shape[-1]} differs from the action statistics' width {width}")
    lo, hi, mean, std = arrays
    return NormParams(min=lo, max=hi, mean=mean, std=std, dim=int(width))


def _check_embodiment(spec: EmbodimentSpec, settings: ProcessorSettings) -> None:
    """Refuse combinations the model or the decoder cannot handle, naming the embodiment."""
    tag = spec.tag
    for key in spec.sin_cos_keys + spec.state_mean_std_keys:
        if key not in spec.state_keys:
            raise EmbodimentError(f"embodiment {tag!r}: state encoding lists {key!r}, which is not a state key")
    for key in spec.action_mean_std_keys:
        if key not in spec.action_keys:
            raise EmbodimentError(f"embodiment {tag!r}: action mean/std lists {key!r}, which is not an action key")
    for key, norm in spec.state_norm.items():
        if norm.min.ndim != 1:
            raise EmbodimentError(f"embodiment {tag!r}: state statistics of {key!r} must be 1-D, got {norm.min.shape}")
    for key, norm in spec.action_norm.items():
        if norm.min.ndim == 2 and norm.min.shape[0] < spec.action_horizon:
            raise EmbodimentError(
                f"embodiment {tag!r}: statistics of action {key!r} cover {norm.min.shape[0]} steps, "
                f"expected at least the action horizon {spec.action_horizon}"
            )
    for key, cfg in spec.action_configs.items():
        if not spec.is_relative(key):
            continue
        if cfg.state_key not in spec.state_keys:
            raise EmbodimentError(
                f"embodiment {tag!r}: relative action {key!r} refers to state {cfg.state_key!r}, which is not a state key"
            )
        width = spec.action_norm[key].dim
        if cfg.type is ActionType.EEF:
            need = EEF_FORMAT_DIMS.get(cfg.format)
            if need is None:
                raise EmbodimentError(
                    f"embodiment {tag!r}: EEF action {key!r} has format {cfg.format.name} — expected XYZ_ROT6D or XYZ_ROTVEC"
                )
            if width != need:
                raise EmbodimentError(f"embodiment {tag!r}: {cfg.format.name} action {key!r} has width {width}, expected {need}")
        elif cfg.format is not ActionFormat.DEFAULT:
            raise EmbodimentError(f"embodiment {tag!r}: NON_EEF action {key!r} must use format DEFAULT, got {cfg.format.name}")
        if spec.state_norm[cfg.state_key].dim != width:
            raise EmbodimentError(
                f"embodiment {tag!r}: relative action {key!r} (width {width}) needs reference state "
                f"{cfg.state_key!r} of the same width, got {spec.state_norm[cfg.state_key].dim}"
            )
    if spec.state_width > spec.max_state_dim:
        raise EmbodimentError(
            f"embodiment {tag!r}: normalised state width {spec.state_width} exceeds max_state_dim {spec.max_state_dim}"
        )
    if spec.action_width > spec.max_action_dim:
        raise EmbodimentError(
            f"embodiment {tag!r}: action width {spec.action_width} exceeds max_action_dim {spec.max_action_dim}"
        )
    if spec.action_horizon > settings.max_action_horizon:
        raise EmbodimentError(
            f"embodiment {tag!r}: action horizon {spec.action_horizon} exceeds max_action_horizon {settings.max_action_horizon}"
        )
