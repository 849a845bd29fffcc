"""The exact text GR00T N1.7 tokenises for one sample (spec §4.3).

One user message whose content is every image first (time-major, then view), then the instruction,
rendered by the Qwen3-VL chat template with no system turn and no generation prompt; the processor then
expands each image's single ``<|image_pad|>`` to one token per merged 32x32 patch. For one 256x256
camera and "pick up the apple" that is ``<|im_start|>user\\n<|vision_start|>`` + 64 x ``<|image_pad|>`` +
``<|vision_end|>pick up the apple<|im_end|>\\n``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ....base.errors import TokenizerError
from ....processing.prompt import formalize_language
from .tokenizer import IM_END, IM_START, IMAGE_PAD, VISION_END, VISION_START, Qwen3VLTokenizer

#: pixels of one LLM image token: (patch 16 x spatial merge 2)².
PIXELS_PER_TOKEN = 32 * 32


def image_token_count(height: int, width: int) -> int:
    """LLM tokens of one h' x w' image after smart resize: (h'/32)·(w'/32) (64 for 256x256)."""
    if height % 32 or width % 32 or height < 32 or width < 32:
        raise TokenizerError(
            f"image {height}x{width} is not a whole number of 32x32 tokens — sizes must come from the image chain"
        )
    return height * width // PIXELS_PER_TOKEN


def prompt_text(instruction: str, image_sizes: Sequence[tuple[int, int]], *, formalize: bool = True) -> str:
    """The expanded chat text of one sample; ``image_sizes`` are (h', w') in LLM order."""
    text = formalize_language(instruction) if formalize else instruction
    images = "".join(
        f"{VISION_START}{IMAGE_PAD * image_token_count(h, w)}{VISION_END}" for h, w in image_sizes
    )
    return f"{IM_START}user\n{images}{text}{IM_END}\n"


def prompt_ids(
    tokenizer: Qwen3VLTokenizer,
    instruction: str,
    image_sizes: Sequence[tuple[int, int]],
    *,
    formalize: bool = True,
) -> np.ndarray:
    """int64 token ids of one sample's prompt (S = 5 + L_text + Σ (N_i + 2))."""
    return np.asarray(
        tokenizer.encode(prompt_text(instruction, image_sizes, formalize=formalize)), dtype=np.int64
    )
