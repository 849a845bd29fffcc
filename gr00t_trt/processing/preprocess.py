"""The robot-facing processing API: observation dict -> ``ModelInputs`` -> (model) -> physical actions.

Observations use Isaac-GR00T's ``Gr00tPolicy.get_action`` formats (spec §5.5):

- nested: ``{"video": {view: uint8 [B, T, H, W, 3]}, "state": {key: float [B, T, D]},
  "language": {language_key: [[str], ...] or [str, ...]}}`` — ``decode`` returns ``{key: [B, H, dim]}``;
- flat (``Gr00tSimPolicyWrapper``): ``{"video.<view>": ..., "state.<key>": ..., <language_key>: [str, ...]}``
  (``"annotation.human.coarse_action"`` is accepted for a ``"task"`` key) — ``decode`` returns
  ``{"action.<key>": [B, H, dim]}``.

Everything here is numpy/OpenCV/Pillow/tokenizers: the robot runs it without PyTorch.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..base.errors import ObservationError
from .actions import decode_actions
from .modality import EmbodimentSpec, ProcessorSpec

MODALITY_KEYS = ("video", "state", "language")
#: DC sim environments send this key for a "task" language key (Gr00tSimPolicyWrapper does the same)
COARSE_ACTION_KEY = "annotation.human.coarse_action"


@dataclass(frozen=True, eq=False)
class ModelInputs:
    """Everything the exported graphs need for one control step, plus what decoding needs."""

    input_ids: np.ndarray  # int64 [B, S], left-padded
    attention_mask: np.ndarray  # bool [B, S]
    image_mask: np.ndarray  # bool [B, S] (input_ids == image_token_index)
    images: list[np.ndarray]  # uint8 [h', w', 3] in LLM order: sample, then time, then view
    state: np.ndarray  # float32 [B, 1, Ds] (T = len(state delta_indices) = 1 for every N1.6 config)
    embodiment_id: np.ndarray  # int64 [B]
    raw_state: dict[str, np.ndarray]  # key -> float32 [B, T, D] as given (reference for relative actions)
    embodiment: str
    flat: bool = False  # observation came in the flat "video.<k>" form; decode answers "action.<k>"


class HostPreprocessor:
    """What every family's runtime preprocessor shares: the embodiments, the image chain, the batch and
    prompt-length bounds, the LRU prompt cache (bounded in entries and bytes), image sizes from shapes
    alone and the decoding of normalised actions. A family adds ``__call__`` (its graphs' inputs)."""

    def __init__(
        self,
        spec: ProcessorSpec,
        tokenizer: Any,
        image_transform: Any,
        *,
        cache_size: int = 256,
        cache_bytes: int = 16 << 20,
        max_prompt_tokens: int | None = None,
        max_batch: int | None = None,
    ):
        self.spec = spec
        self.tokenizer = tokenizer
        #: the family's image chain: ``(frame) -> image`` and ``output_size(h, w)`` from shapes alone
        self.image_transform = image_transform
        self._cache: OrderedDict[tuple, Any] = OrderedDict()
        self._cache_size = cache_size
        #: prompt cache bound in bytes (instruction text + cached arrays), besides the entry count
        self._cache_bytes = cache_bytes
        self._cache_used = 0
        #: longest prompt the export accepts (its max sequence length); longer ones are refused, not cached
        self.max_prompt_tokens = max_prompt_tokens
        #: largest batch the export runs; a larger one is refused before any image is resized
        self.max_batch = max_batch
        self.cache_hits = 0
        self.cache_misses = 0

    def image_sizes(self, obs: Mapping[str, Any], embodiment: str) -> list[tuple[int, int]]:
        """(h', w') of every image of ``obs`` in LLM order, from shapes only (video keys are validated,
        other modalities are not looked at)."""
        spec = self.spec.embodiment(embodiment)
        video, flat = _video_part(obs, spec)
        batch = _check_video(video, spec, flat)
        sizes = [self.image_transform.output_size(*video[view].shape[2:4]) for view in spec.video_keys]
        return sizes * (batch * spec.num_frames)

    def decode(self, action_pred: np.ndarray, inputs: Any) -> dict[str, np.ndarray]:
        """Model output [B, H, D] (normalised, padded) -> physical float32 actions [B, H_g, dim] per key;
        keys are ``"action.<key>"`` when the observation was flat, else the bare key."""
        spec = self.spec.embodiment(inputs.embodiment)
        action_pred = np.asarray(action_pred)
        if action_pred.ndim != 3 or action_pred.shape[0] != inputs.embodiment_id.shape[0]:
            raise ObservationError(
                f"action_pred must be [B={inputs.embodiment_id.shape[0]}, H, D], got {list(action_pred.shape)}"
            )
        actions = decode_actions(action_pred, spec, inputs.raw_state)
        if inputs.flat:
            return {f"action.{k}": v for k, v in actions.items()}
        return actions

    def reset(self) -> None:
        """Drop cached prompts (nothing else is kept between control steps)."""
        self._cache.clear()
        self._cache_used = 0

    @property
    def cache_bytes_used(self) -> int:
        """Bytes held by the prompt cache (instruction text + cached arrays), bounded by ``cache_bytes``."""
        return self._cache_used

    def _cached(self, key: tuple) -> Any:
        """The cached prompt of ``key`` (marked recently used), or None; counts hits and misses."""
        cached = self._cache.get(key)
        if cached is None:
            self.cache_misses += 1
            return None
        self._cache.move_to_end(key)
        self.cache_hits += 1
        return cached

    def _check_prompt_length(self, tokens: int) -> None:
        if self.max_prompt_tokens is not None and tokens > self.max_prompt_tokens:
            raise ObservationError(
                f"the prompt of this instruction is {tokens} tokens (with its images), more than the "
                f"{self.max_prompt_tokens} the export accepts — shorten the instruction (or re-export with a larger "
                "ExportOptions.max_seq_len)"
            )

    def _check_instruction_length(self, instruction: str) -> None:
        """Refuse, before tokenising, an instruction too long to fit whatever its tokens turn out to be."""
        if self.max_prompt_tokens is None or len(instruction) <= self.max_prompt_tokens:
            return  # a token holds at least one character: cheap early exit for every ordinary instruction
        limit = (self.max_prompt_tokens + 2) * self.tokenizer.longest_token_chars  # +2: tokens across its ends
        size = len(instruction.encode("utf-8", "surrogatepass"))
        if size > limit:
            raise ObservationError(
                f"the instruction is {size:,} bytes, more than the {self.max_prompt_tokens} tokens the export "
                f"accepts can hold (at most {limit:,} bytes) — shorten the instruction"
            )

    def _remember(self, key: tuple, value: Any) -> None:
        """Cache an accepted prompt, evicting the least recently used beyond the entry or byte bound."""
        cost = _entry_bytes(key, value)
        if cost > self._cache_bytes:
            return  # one entry alone would exceed the bound: not worth keeping
        self._cache[key] = value
        self._cache_used += cost
        while len(self._cache) > self._cache_size or self._cache_used > self._cache_bytes:
            old_key, old_value = self._cache.popitem(last=False)
            self._cache_used -= _entry_bytes(old_key, old_value)


def _entry_bytes(key: tuple, value: np.ndarray | tuple[np.ndarray, ...]) -> int:
    """Bytes one cache entry holds: its instruction text, its arrays, a fixed cost per image size."""
    arrays = value if isinstance(value, tuple) else (value,)
    return len(key[0].encode("utf-8", "surrogatepass")) + sum(a.nbytes for a in arrays) + 64 * (1 + len(key[1]))


# ------------------------------------------------------------------------------------------ parsing
@dataclass(frozen=True)
class _Parsed:
    video: dict[str, np.ndarray]
    state: dict[str, np.ndarray]
    language: list[str]
    flat: bool
    batch: int


def _is_nested(obs: Mapping[str, Any]) -> bool:
    return any(isinstance(obs.get(m), Mapping) for m in MODALITY_KEYS)


def _check_keys(got: Sequence[str], expected: Sequence[str], where: str) -> None:
    missing = [k for k in expected if k not in got]
    extra = [k for k in got if k not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {missing}")
        if extra:
            parts.append(f"unexpected {extra}")
        raise ObservationError(f"{where}: {' and '.join(parts)} — expected exactly {list(expected)}")


def _video_part(obs: Mapping[str, Any], spec: EmbodimentSpec) -> tuple[dict[str, Any], bool]:
    if not isinstance(obs, Mapping):
        raise ObservationError(f"observation must be a dict, got {type(obs).__name__}")
    if _is_nested(obs):
        video = obs.get("video")
        if not isinstance(video, Mapping):
            raise ObservationError("observation['video'] must be a dict of view -> uint8 [B, T, H, W, 3]")
        _check_keys(list(video), spec.video_keys, "observation['video']")
        return dict(video), False
    flat_views = [k[len("video.") :] for k in obs if k.startswith("video.")]
    _check_keys(flat_views, spec.video_keys, "observation video keys ('video.<view>')")
    return {k: obs[f"video.{k}"] for k in spec.video_keys}, True


def _name(key: str, modality: str, flat: bool) -> str:
    return f"'{modality}.{key}'" if flat else f"{modality}[{key!r}]"


def _check_video(video: Mapping[str, Any], spec: EmbodimentSpec, flat: bool) -> int:
    batch = None
    for view in spec.video_keys:
        arr, name = video[view], _name(view, "video", flat)
        if not isinstance(arr, np.ndarray):
            raise ObservationError(f"{name} must be a numpy array uint8 [B, T, H, W, 3], got {type(arr).__name__}")
        if arr.dtype != np.uint8:
            raise ObservationError(f"{name} must be uint8 (RGB 0..255), got {arr.dtype}")
        if arr.ndim != 5:
            raise ObservationError(f"{name} must have rank 5 [B, T, H, W, 3], got shape {list(arr.shape)}")
        if arr.shape[-1] != 3:
            raise ObservationError(f"{name} must have 3 channels (RGB) in the last axis, got shape {list(arr.shape)}")
        if arr.shape[1] != spec.num_frames:
            raise ObservationError(f"{name} must hold T={spec.num_frames} frames in axis 1, got shape {list(arr.shape)}")
        if arr.shape[0] < 1 or arr.shape[2] < 1 or arr.shape[3] < 1:
            raise ObservationError(f"{name} has an empty batch or image, shape {list(arr.shape)}")
        if batch is not None and arr.shape[0] != batch:
            raise ObservationError(f"batch mismatch: {name} has batch {arr.shape[0]}, other inputs have {batch}")
        batch = arr.shape[0]
    return batch


def transform_images(
    parsed: _Parsed, spec: EmbodimentSpec, transform: Callable[[np.ndarray], np.ndarray]
) -> tuple[list[np.ndarray], tuple[tuple[int, int], ...]]:
    """Every frame through the image chain in the model's order (sample, frame, view), and the sizes of one
    sample's images (the same for every sample: one prompt shape per batch)."""
    images = [
        transform(parsed.video[view][b, t])
        for b in range(parsed.batch)
        for t in range(spec.num_frames)
        for view in spec.video_keys
    ]
    per_sample = len(images) // parsed.batch
    return images, tuple(img.shape[:2] for img in images[:per_sample])


def _parse_observation(obs: Mapping[str, Any], spec: EmbodimentSpec, max_batch: int | None = None) -> _Parsed:
    """Keys, shapes, dtypes and the batch limit checked from shapes alone, before any per-element work."""
    video, flat = _video_part(obs, spec)
    batch = _check_video(video, spec, flat)
    if max_batch is not None and batch > max_batch:
        raise ObservationError(f"batch size B is {batch}, the export supports 1..{max_batch} — send fewer samples "
                               "or re-export with a larger --max-batch")
    if flat:
        lang_key = spec.language_key
        if lang_key == "task" and lang_key not in obs and COARSE_ACTION_KEY in obs:
            lang_key = COARSE_ACTION_KEY
        expected = [f"video.{k}" for k in spec.video_keys] + [f"state.{k}" for k in spec.state_keys] + [lang_key]
        _check_keys(list(obs), expected, "observation")
        state = {k: obs[f"state.{k}"] for k in spec.state_keys}
        language = _flat_language(obs[lang_key], lang_key, batch)
    else:
        _check_keys(list(obs), MODALITY_KEYS, "observation")
        if not isinstance(obs["state"], Mapping) or not isinstance(obs["language"], Mapping):
            raise ObservationError("observation['state'] and observation['language'] must be dicts")
        _check_keys(list(obs["state"]), spec.state_keys, "observation['state']")
        _check_keys(list(obs["language"]), [spec.language_key], "observation['language']")
        state = dict(obs["state"])
        language = _nested_language(obs["language"][spec.language_key], spec.language_key, batch)

    for key in spec.state_keys:
        arr, name = state[key], _name(key, "state", flat)
        if not isinstance(arr, np.ndarray):
            raise ObservationError(f"{name} must be a numpy array float32 [B, T, D], got {type(arr).__name__}")
        if not np.issubdtype(arr.dtype, np.floating):
            raise ObservationError(f"{name} must be float32, got {arr.dtype}")
        if arr.ndim != 3:
            raise ObservationError(f"{name} must have rank 3 [B, T, D], got shape {list(arr.shape)}")
        if arr.shape[0] != batch:
            raise ObservationError(f"batch mismatch: {name} has batch {arr.shape[0]}, video has {batch}")
        if arr.shape[1] != len(spec.state_delta_indices):
            raise ObservationError(
                f"{name} must hold T={len(spec.state_delta_indices)} steps in axis 1, got shape {list(arr.shape)}"
            )
        norm = spec.state_norm[key]
        if arr.shape[2] != norm.dim:
            raise ObservationError(f"{name} has width {arr.shape[2]}, expected {norm.dim} (from statistics.json)")
        with np.errstate(over="ignore"):
            arr = state[key] = arr.astype(np.float32, copy=False)  # cast first: 1e300 in float64 is inf here
        if not np.isfinite(arr).all():
            raise ObservationError(f"{name} contains NaN or inf (as float32)")
        _warn_far_outside(arr, norm, name)
    if len(language) != batch:
        raise ObservationError(f"batch mismatch: language {spec.language_key!r} has {len(language)} entries, video has {batch}")
    return _Parsed(video=video, state=state, language=language, flat=flat, batch=batch)


def _check_language_count(count: int, batch: int, key: str) -> None:
    if count != batch:
        raise ObservationError(f"batch mismatch: language {key!r} has {count:,} entries, video has {batch}")


#: a state this many statistics ranges beyond min/max is almost surely in the wrong unit or garbage
FAR_OUTSIDE_RANGES = 100.0


def _warn_far_outside(arr: np.ndarray, norm: Any, name: str) -> None:
    """Warn (not refuse: a robot may legitimately leave its training range) about physical values orders of
    magnitude beyond the embodiment's statistics, which make the model's actions absurd."""
    low, high = np.asarray(norm.min, np.float64), np.asarray(norm.max, np.float64)
    span = np.maximum(high - low, 1e-6) * FAR_OUTSIDE_RANGES
    far = (arr < low - span) | (arr > high + span)
    if far.any():
        worst = float(arr[far].flat[np.argmax(np.abs(arr[far]))])
        warnings.warn(f"{name} holds {worst:g}, over {FAR_OUTSIDE_RANGES:g}× the statistics' range "
                      f"[{float(low.min()):g}, {float(high.max()):g}] away from it — check the unit and the key order; "
                      "actions from such a state are unreliable", RuntimeWarning, stacklevel=4)


def _nested_language(value: Any, key: str, batch: int) -> list[str]:
    """[[str], ...] (one instruction per sample and step) or [str, ...] -> list of B strings."""
    if not isinstance(value, (list, tuple)):
        raise ObservationError(f"language[{key!r}] must be a list of B lists of one string, got {type(value).__name__}")
    _check_language_count(len(value), batch, key)
    out = []
    for item in value:
        if isinstance(item, (list, tuple)) and len(item) == 1 and isinstance(item[0], str):
            out.append(item[0])
        elif isinstance(item, str):
            out.append(item)
        else:
            raise ObservationError(f"language[{key!r}] items must be [str] (one instruction per sample), got {item!r}")
    return out


def _flat_language(value: Any, key: str, batch: int) -> list[str]:
    """(str, ...) / [str, ...] / array of str -> list of B strings."""
    if isinstance(value, np.ndarray):
        if value.ndim != 1 or value.dtype.kind != "U":
            raise ObservationError(f"{key!r} must be B strings, got an array of dtype {value.dtype} and shape "
                                   f"{list(value.shape)}")
        _check_language_count(value.shape[0], batch, key)
        value = value.tolist()
    elif isinstance(value, (list, tuple)):
        _check_language_count(len(value), batch, key)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ObservationError(f"{key!r} must be a list or tuple of B strings, got {value!r:.80}")
    return list(value)
