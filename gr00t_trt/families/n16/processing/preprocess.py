"""N1.6's robot-facing preprocessor: the SigLIP2 image chain and the Eagle prompt on top of the shared
observation parsing, caches and action decoding (``processing.preprocess.HostPreprocessor``).

numpy/OpenCV/Pillow/tokenizers only: the robot runs it without PyTorch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ....base.errors import CheckpointError
from ....processing.actions import check_reference_rotations
from ....processing.images import ImageTransform
from ....processing.modality import ProcessorSpec
from ....processing.preprocess import HostPreprocessor, ModelInputs, _parse_observation, transform_images
from ....processing.prompt import build_prompt, chat_frame
from ....processing.state import normalize_state
from ....processing.tokenizer import EagleTokenizer, load_tokenizer
from .modality import load_processor_spec


class Preprocessor(HostPreprocessor):
    """N1.6's: validates observations, runs the SigLIP2 image chain, builds and caches Eagle prompt ids,
    normalises state, and decodes the model's normalised actions back to physical units."""

    def __init__(
        self,
        spec: ProcessorSpec,
        tokenizer: EagleTokenizer,
        *,
        max_state_dim: int,
        image_token_index: int,
        pixels_per_token: int,
        cache_size: int = 256,
        cache_bytes: int = 16 << 20,
        max_prompt_tokens: int | None = None,
        max_batch: int | None = None,
    ):
        tokenizer.check(image_token_index, source="tokenizer")
        if spec.settings.max_state_dim != max_state_dim:
            raise CheckpointError(
                f"{spec.source}: processor max_state_dim {spec.settings.max_state_dim} differs from the model's "
                f"max_state_dim {max_state_dim}"
            )
        factor = math.isqrt(pixels_per_token)
        if factor * factor != pixels_per_token:
            raise CheckpointError(f"pixels_per_token {pixels_per_token} is not (patch · unshuffle)² of any patch grid")
        super().__init__(spec, tokenizer, ImageTransform.from_settings(spec.settings, factor=factor),
                         cache_size=cache_size, cache_bytes=cache_bytes, max_prompt_tokens=max_prompt_tokens,
                         max_batch=max_batch)
        for embodiment in spec.embodiments.values():  # render the chat template now, once per prompt shape
            chat_frame(tokenizer.chat_template, embodiment.num_frames * len(embodiment.video_keys))
        self.image_token_index = image_token_index
        self.pixels_per_token = pixels_per_token

    @classmethod
    def from_dir(
        cls, folder: str | Path, *, max_state_dim: int, image_token_index: int, pixels_per_token: int,
        max_prompt_tokens: int | None = None, max_batch: int | None = None,
    ) -> Preprocessor:
        """Load the processor files and tokenizer of a checkpoint folder or export directory."""
        return cls(
            load_processor_spec(folder),
            load_tokenizer(folder),
            max_state_dim=max_state_dim,
            image_token_index=image_token_index,
            pixels_per_token=pixels_per_token,
            max_prompt_tokens=max_prompt_tokens,
            max_batch=max_batch,
        )

    # ------------------------------------------------------------------------------------------ API
    def __call__(self, obs: Mapping[str, Any], embodiment: str) -> ModelInputs:
        spec = self.spec.embodiment(embodiment)
        parsed = _parse_observation(obs, spec, self.max_batch)
        for text in parsed.language:
            self._check_instruction_length(text)
        images, sizes = transform_images(parsed, spec, self.image_transform)
        ids, mask = self.tokenizer.batch([self.prompt_ids(text, sizes) for text in parsed.language])
        raw_state = {k: np.asarray(parsed.state[k], dtype=np.float32) for k in spec.state_keys}
        check_reference_rotations(raw_state, spec, parsed.flat)
        return ModelInputs(
            input_ids=ids,
            attention_mask=mask,
            image_mask=ids == self.image_token_index,
            images=images,
            state=normalize_state(raw_state, spec),
            embodiment_id=np.full((parsed.batch,), spec.id, dtype=np.int64),
            raw_state=raw_state,
            embodiment=spec.tag,
            flat=parsed.flat,
        )

    def prompt_ids(self, instruction: str, image_sizes: Sequence[tuple[int, int]]) -> np.ndarray:
        """Token ids of one sample's prompt, cached while the instruction and image sizes are unchanged
        (the control loop sends the same instruction every step)."""
        self._check_instruction_length(instruction)
        key = (instruction, tuple(image_sizes))
        cached = self._cached(key)
        if cached is not None:
            return cached
        text = build_prompt(
            instruction,
            image_sizes,
            pixels_per_token=self.pixels_per_token,
            formalize=self.spec.settings.formalize_language,
            template=self.tokenizer.chat_template,
        )
        ids = np.asarray(self.tokenizer.encode(text), dtype=np.int64)
        ids.setflags(write=False)
        self._check_prompt_length(len(ids))
        self._remember(key, ids)
        return ids
