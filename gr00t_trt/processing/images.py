"""GR00T N1.6's eval image chain, reproduced step by step for bit-level parity.

Per camera frame (uint8 RGB): OpenCV INTER_AREA resize so the short side is ``shortest_edge`` (also
upscales), a centre crop keeping ``crop_fraction`` of each side, the same short-side resize again,
then Eagle's ``fetch_image`` resize with Pillow BICUBIC to multiples of 28. The result stays uint8;
the [-1, 1] scaling happens inside the exported vision graph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from ..base.errors import ObservationError

#: Eagle's resize factor (patch 14 x pixel-unshuffle 2); a side is rounded to a multiple of it.
IMAGE_FACTOR = 28
#: Eagle fetch_image bounds (never bind for N1.6's 256-pixel short side, kept for fidelity).
MIN_PIXELS = 4 * 28 * 28
MAX_PIXELS = 4096 * 28 * 28
MAX_SIDE = 7000
MAX_RATIO = 200


@dataclass(frozen=True)
class ImageTransform:
    """The eval chain with one processor's settings; ``factor`` is the model's patch x unshuffle."""

    shortest_edge: int = 256
    crop_fraction: float = 0.95
    factor: int = IMAGE_FACTOR

    @classmethod
    def from_settings(cls, settings, factor: int = IMAGE_FACTOR) -> ImageTransform:
        """From a ``ProcessorSettings`` (shortest_image_edge / crop_fraction or their fallbacks)."""
        return cls(settings.image_edge, settings.image_crop_fraction, factor)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """(h', w') the chain produces for an h x w frame, without touching pixels."""
        if height < 1 or width < 1:
            raise ObservationError(f"image size must be positive, got {height}x{width}")
        ratio = max(height, width) / min(height, width)
        if ratio > MAX_RATIO:
            # checked before any resize: a 1x8000 frame would otherwise be upscaled to 256x2048000 (GBs)
            raise ObservationError(
                f"camera frame {height}x{width} has aspect ratio {ratio:.0f}:1 — expected at most {MAX_RATIO}:1 "
                "(Eagle's limit); send the camera's real frame"
            )
        h, w = _short_side_size(height, width, self.shortest_edge)
        h, w = _crop_size(h, w, self.crop_fraction)
        h, w = _short_side_size(h, w, self.shortest_edge)
        return _multiple_size(h, w, self.factor)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """uint8 [H, W, 3] -> uint8 [h', w', 3] (C-contiguous)."""
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ObservationError(f"image must be uint8 [H, W, 3], got {image.dtype} {list(image.shape)}")
        self.output_size(image.shape[0], image.shape[1])  # size and ratio checks, before any pixel is touched
        image = _resize_short_side(image, self.shortest_edge)
        image = _center_crop(image, self.crop_fraction)
        image = _resize_short_side(image, self.shortest_edge)
        h, w = _multiple_size(image.shape[0], image.shape[1], self.factor)
        if (h, w) != image.shape[:2]:
            resized = Image.fromarray(np.ascontiguousarray(image)).resize((w, h), Image.Resampling.BICUBIC)
            image = np.asarray(resized)
        return np.ascontiguousarray(image)


def processed_image_size(
    height: int,
    width: int,
    processor=None,
    *,
    shortest_edge: int | None = None,
    crop_fraction: float | None = None,
    factor: int = IMAGE_FACTOR,
) -> tuple[int, int]:
    """(h', w') of an h x w camera frame after the eval chain (480x640 -> 252x336, 256x256 -> 252x252).

    ``processor`` (a ProcessorSpec or ProcessorSettings) supplies shortest_image_edge / crop_fraction;
    explicit keywords win; without either, N1.6's 256 / 0.95.
    """
    return _transform(processor, shortest_edge, crop_fraction, factor).output_size(height, width)


def preprocess_image(
    image: np.ndarray,
    processor=None,
    *,
    shortest_edge: int | None = None,
    crop_fraction: float | None = None,
    factor: int = IMAGE_FACTOR,
) -> np.ndarray:
    """Run the eval chain on one uint8 [H, W, 3] frame (settings as in ``processed_image_size``)."""
    return _transform(processor, shortest_edge, crop_fraction, factor)(image)


def _transform(processor, shortest_edge, crop_fraction, factor) -> ImageTransform:
    base = ImageTransform(factor=factor)
    if processor is not None:
        base = ImageTransform.from_settings(getattr(processor, "settings", processor), factor)
    return ImageTransform(
        base.shortest_edge if shortest_edge is None else shortest_edge,
        base.crop_fraction if crop_fraction is None else crop_fraction,
        factor,
    )


# ------------------------------------------------------------------------------------------ steps
def _short_side_size(height: int, width: int, edge: int) -> tuple[int, int]:
    # albumentations SmallestMaxSize: one scale for both sides, Python round() per side
    scale = edge / float(min(height, width))
    if scale == 1.0:
        return height, width
    return round(height * scale), round(width * scale)


def _resize_short_side(image: np.ndarray, edge: int) -> np.ndarray:
    h, w = _short_side_size(image.shape[0], image.shape[1], edge)
    if (h, w) == image.shape[:2]:
        return image
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)


def _crop_size(height: int, width: int, fraction: float) -> tuple[int, int]:
    return max(1, int(height * fraction)), max(1, int(width * fraction))


def _center_crop(image: np.ndarray, fraction: float) -> np.ndarray:
    height, width = image.shape[:2]
    ch, cw = _crop_size(height, width, fraction)
    top, left = (height - ch) // 2, (width - cw) // 2
    return image[top : top + ch, left : left + cw]


def _multiple_size(height: int, width: int, factor: int) -> tuple[int, int]:
    """Eagle's smart_resize: round each side to a multiple of ``factor`` within the pixel bounds."""
    if max(height, width) / min(height, width) > MAX_RATIO:
        raise ObservationError(
            f"image aspect ratio {max(height, width) / min(height, width):.2f}:1 after resizing and cropping "
            f"({height}x{width}) — expected at most {MAX_RATIO}:1 (Eagle's limit); send the camera's real frame"
        )
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > MAX_PIXELS:
        beta = math.sqrt(height * width / MAX_PIXELS)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < MIN_PIXELS:
        beta = math.sqrt(MIN_PIXELS / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return min(h, MAX_SIDE // factor * factor), min(w, MAX_SIDE // factor * factor)
