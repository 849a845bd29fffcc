"""Observation -> N1.7 host feeds: images per view and frame, prompt ids, masks, M-RoPE ids and state.

Observations have Isaac-GR00T's formats (nested or flat, as N1.6; spec §6.1); DROID and real_g1 send
two frames per view (video [B, 2, H, W, 3]). Frames are ordered time-major, then view (spec §4.3), per
sample. Prompts are left-padded to the longest in the batch — the original's own padding, which its VL
self-attention attends to — and optionally further to a runtime shape bucket, whose extra columns
``original_mask`` marks so that the graphs can keep them out of that attention (issue 19's trap).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ....base.errors import ObservationError
from ....processing.actions import check_reference_rotations
from ....processing.modality import ProcessorSpec
from ....processing.preprocess import HostPreprocessor, _parse_observation, transform_images
from ....processing.state import normalize_state
from .images import N17ImageTransform, grid_thw, normalize_patches, patch_rows
from .modality import load_n17_processor_spec, read_letter_box
from .prompt import prompt_ids
from .rope import PAD_POSITION, sample_positions
from .tokenizer import Qwen3VLTokenizer, resolve_qwen3_vl_tokenizer


@dataclass(frozen=True, eq=False)
class N17ModelInputs:
    """Everything N1.7's graphs need for one control step, plus what decoding needs."""

    input_ids: np.ndarray  # int64 [B, S], left-padded with <|endoftext|>
    attention_mask: np.ndarray  # bool [B, S]: real prompt tokens
    #: bool [B, S]: the columns the original model sees (its own batch padding included), False on the
    #: runtime's bucket padding — the VL self-attention must attend to exactly these
    original_mask: np.ndarray
    image_mask: np.ndarray  # bool [B, S] (input_ids == <|image_pad|>)
    position_ids: np.ndarray  # int64 [3, B, S] M-RoPE (t, h, w); padding gets 1 as in the reference
    images: list[np.ndarray]  # uint8 [h', w', 3] after the eval chain, order: sample, time, view
    image_grids: list[tuple[int, int, int]]  # (1, gh, gw) per image, same order
    state: np.ndarray  # float32 [B, 1, max_state_dim]
    embodiment_id: np.ndarray  # int64 [B]
    raw_state: dict[str, np.ndarray]  # key -> float32 [B, T, D] as given (reference for relative actions)
    embodiment: str
    flat: bool = False  # observation came in the flat "video.<k>" form

    @functools.cached_property
    def pixel_values(self) -> list[np.ndarray]:
        """float32 [gh·gw, 1536] per image, same order (merge-block rows): the PyTorch reference's input,
        made on first use only (the exported vision graph patchifies the uint8 images itself)."""
        return [normalize_patches(patch_rows(img)) for img in self.images]


class N17HostProcessor(HostPreprocessor):
    """N1.7's runtime preprocessor (the surface of N1.6's ``Preprocessor``): validates observations, runs
    the image chain, builds (and caches) prompt ids and their position ids, normalises state, decodes
    actions. numpy/OpenCV/tokenizers only.

    Bounds as N1.6: a batch over ``max_batch`` is refused from shapes, an instruction that cannot fit
    ``max_prompt_tokens`` before it is tokenised, a prompt over it before any image is resized.
    ``letter_box`` is processor_config's ``letter_box_transform`` (false in the public checkpoints)."""

    def __init__(
        self,
        spec: ProcessorSpec,
        tokenizer: Qwen3VLTokenizer,
        *,
        letter_box: bool = False,
        cache_size: int = 256,
        cache_bytes: int = 16 << 20,
        max_prompt_tokens: int | None = None,
        max_batch: int | None = None,
    ):
        settings = spec.settings
        transform = N17ImageTransform(settings.image_edge, settings.image_crop_fraction, letter_box)
        super().__init__(spec, tokenizer.check(), transform, cache_size=cache_size, cache_bytes=cache_bytes,
                         max_prompt_tokens=max_prompt_tokens, max_batch=max_batch)
        self.formalize = settings.formalize_language

    @classmethod
    def from_dir(cls, folder: str | Path, tokenizer: Qwen3VLTokenizer | None = None, **options: Any) -> N17HostProcessor:
        """The processor files of a checkpoint folder or export directory; the tokenizer beside them, or
        Qwen3-VL's from the Hub when none is given and the folder has none. ``options``: the bounds."""
        spec = load_n17_processor_spec(folder)
        tokenizer = tokenizer if tokenizer is not None else resolve_qwen3_vl_tokenizer(folder)
        return cls(spec, tokenizer, letter_box=read_letter_box(folder), **options)

    def __call__(
        self, obs: Mapping[str, Any], embodiment: str, *, seq_len: int | None = None
    ) -> N17ModelInputs:
        """Host feeds of one observation; ``seq_len`` left-pads further to a runtime bucket length."""
        spec = self.spec.embodiment(embodiment)
        parsed = _parse_observation(obs, spec, self.max_batch)  # shapes and the batch bound: no pixel touched
        for text in parsed.language:
            self._check_instruction_length(text)
        sizes = tuple(self.image_transform.output_size(*parsed.video[view].shape[2:4])
                      for _ in range(spec.num_frames) for view in spec.video_keys)  # fmt: skip
        prompts = [self.prompt(text, sizes) for text in parsed.language]  # too long: refused before resizing
        raw_state = {k: np.asarray(parsed.state[k], dtype=np.float32) for k in spec.state_keys}
        check_reference_rotations(raw_state, spec, parsed.flat)
        longest = max(len(ids) for ids, _ in prompts)
        length = longest if seq_len is None else seq_len
        if length < longest:
            raise ObservationError(
                f"the longest prompt of this batch is {longest} tokens (with its images), more than the bucket "
                f"length {seq_len} — shorten the instruction or use a larger sequence bucket"
            )
        images, _ = transform_images(parsed, spec, self.image_transform)
        batch = parsed.batch
        input_ids = np.full((batch, length), self.tokenizer.pad_token_id, dtype=np.int64)
        attention_mask = np.zeros((batch, length), dtype=bool)
        position_ids = np.full((3, batch, length), PAD_POSITION, dtype=np.int64)
        for b, (ids, positions) in enumerate(prompts):
            input_ids[b, length - len(ids) :] = ids
            attention_mask[b, length - len(ids) :] = True
            position_ids[:, b, length - len(ids) :] = positions
        original_mask = np.zeros((batch, length), dtype=bool)
        original_mask[:, length - longest :] = True
        return N17ModelInputs(
            input_ids=input_ids,
            attention_mask=attention_mask,
            original_mask=original_mask,
            image_mask=input_ids == self.tokenizer.image_token_id,
            position_ids=position_ids,
            images=images,
            image_grids=[grid_thw(*img.shape[:2]) for img in images],
            state=normalize_state(raw_state, spec),
            embodiment_id=np.full((batch,), spec.id, dtype=np.int64),
            raw_state=raw_state,
            embodiment=spec.tag,
            flat=parsed.flat,
        )

    def prompt(
        self, instruction: str, image_sizes: Sequence[tuple[int, int]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """(ids [L], positions [3, L]) of one sample, cached while instruction and image sizes repeat
        (the control loop sends the same instruction every step)."""
        self._check_instruction_length(instruction)
        key = (instruction, tuple(image_sizes))
        cached = self._cached(key)
        if cached is not None:
            return cached
        ids = prompt_ids(self.tokenizer, instruction, image_sizes, formalize=self.formalize)
        self._check_prompt_length(len(ids))  # refused, never cached
        positions = sample_positions(ids, [grid_thw(h, w) for h, w in image_sizes],
                                     image_token_id=self.tokenizer.image_token_id)
        ids.setflags(write=False)
        positions.setflags(write=False)
        entry = (ids, positions)
        self._remember(key, entry)
        return entry
