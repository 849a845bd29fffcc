"""GR00T N1.7's eval image chain and Qwen3-VL's patch layout, reproduced for bit-level parity (spec §4.1-4.2).

Per camera frame (uint8 RGB): an optional letterbox pad to a square (only when the processor's
``letter_box_transform`` is true), then N1.6's chain — INTER_AREA resize of the short side to 256, centre
crop keeping 0.95 of each side, INTER_AREA to 256 again — then Qwen's ``smart_resize`` to multiples of 32
with, when that changes the size, the uint8 antialiased bicubic resize torchvision runs on CPU
(``torch.nn.functional.interpolate`` on uint8: fixed-point int16 weights, width pass then height pass),
re-implemented here in numpy so the robot needs no PyTorch. Patches are then flattened the way
Qwen2-VL's image processor does: merge-block order, each 16x16 patch duplicated along time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ....base.errors import ObservationError
from ....processing.images import _center_crop, _crop_size, _resize_short_side, _short_side_size

#: Qwen3-VL vision geometry (spec §1.2): 16-px patches, 2 temporal slices, 2x2 merge.
PATCH_SIZE = 16
TEMPORAL_PATCH_SIZE = 2
MERGE_SIZE = 2
#: smart_resize factor and pixel bounds (Cosmos-Reason2's preprocessor_config: shortest/longest_edge).
FACTOR = PATCH_SIZE * MERGE_SIZE
MIN_PIXELS = 65536
MAX_PIXELS = 16777216
MAX_RATIO = 200
#: one patch row: channel 3 x time 2 x 16 x 16
PATCH_DIM = 3 * TEMPORAL_PATCH_SIZE * PATCH_SIZE * PATCH_SIZE


@dataclass(frozen=True)
class N17ImageTransform:
    """The eval chain with one processor's settings (processor_config.json ``processor_kwargs``)."""

    shortest_edge: int = 256
    crop_fraction: float = 0.95
    letter_box: bool = False

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """(h', w') the chain produces for an h x w frame, without touching pixels."""
        if height < 1 or width < 1:
            raise ObservationError(f"image size must be positive, got {height}x{width}")
        if max(height, width) / min(height, width) > MAX_RATIO:
            raise ObservationError(
                f"camera frame {height}x{width} has aspect ratio {max(height, width) / min(height, width):.0f}:1 — "
                f"expected at most {MAX_RATIO}:1 (Qwen's limit); send the camera's real frame"
            )
        if self.letter_box:
            height = width = max(height, width)
        h, w = _short_side_size(height, width, self.shortest_edge)
        h, w = _crop_size(h, w, self.crop_fraction)
        h, w = _short_side_size(h, w, self.shortest_edge)
        return smart_resize(h, w)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """uint8 [H, W, 3] -> uint8 [h', w', 3] (C-contiguous), h' and w' multiples of 32."""
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ObservationError(f"image must be uint8 [H, W, 3], got {image.dtype} {list(image.shape)}")
        size = self.output_size(image.shape[0], image.shape[1])  # size and ratio checks first
        if self.letter_box:
            image = letterbox(image)
        image = _resize_short_side(image, self.shortest_edge)
        image = _center_crop(image, self.crop_fraction)
        image = _resize_short_side(image, self.shortest_edge)
        return resize_bicubic_aa(image, *size)


def letterbox(image: np.ndarray) -> np.ndarray:
    """Pad to a square with black bars; the top/left bar gets the smaller half (GR00T's LetterBoxPad)."""
    height, width = image.shape[:2]
    side = max(height, width)
    if height == width:
        return image
    top, left = (side - height) // 2, (side - width) // 2
    out = np.zeros((side, side, image.shape[2]), dtype=image.dtype)
    out[top : top + height, left : left + width] = image
    return out


def smart_resize(height: int, width: int) -> tuple[int, int]:
    """Qwen's smart_resize with factor 32: each side rounded (Python ``round``) to a multiple of 32,
    rescaled only if the area leaves [MIN_PIXELS, MAX_PIXELS]."""
    h = round(height / FACTOR) * FACTOR
    w = round(width / FACTOR) * FACTOR
    if h * w > MAX_PIXELS:
        beta = math.sqrt(height * width / MAX_PIXELS)
        h = max(FACTOR, math.floor(height / beta / FACTOR) * FACTOR)
        w = max(FACTOR, math.floor(width / beta / FACTOR) * FACTOR)
    elif h * w < MIN_PIXELS:
        beta = math.sqrt(MIN_PIXELS / (height * width))
        h = math.ceil(height * beta / FACTOR) * FACTOR
        w = math.ceil(width * beta / FACTOR) * FACTOR
    return h, w


# ------------------------------------------------------------------------------------------ bicubic
def _cubic_aa(x: np.ndarray) -> np.ndarray:
    """Keys cubic with a = -0.5 (PIL's and torch's antialiased bicubic), evaluated in torch's order."""
    a = -0.5
    x = np.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


@lru_cache(maxsize=64)
def _axis_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, int]:
    """One axis of torch's uint8 antialiased resize: first source index [out], int16-valued weights
    [out, taps] (int64 here) and their fixed-point precision in bits.

    The float weights are normalised per output sample in float64; the precision is the largest that keeps
    the biggest weight below 2^15; weights are then rounded half away from zero.
    """
    scale = in_size / out_size
    support = 2.0 * scale if scale >= 1.0 else 2.0
    invscale = 1.0 / scale if scale >= 1.0 else 1.0
    taps = int(math.ceil(support)) * 2 + 1
    first = np.zeros(out_size, dtype=np.int64)
    weights = np.zeros((out_size, taps), dtype=np.float64)
    w_max = 0.0
    for i in range(out_size):
        center = scale * (i + 0.5)
        lo = max(int(center - support + 0.5), 0)
        n = min(max(min(int(center + support + 0.5), in_size) - lo, 0), taps)
        w = _cubic_aa((np.arange(n) + lo - center + 0.5) * invscale)
        total = 0.0
        for v in w:  # sequential sum, as the C++ loop
            total += v
        if total != 0.0:
            weights[i, :n] = w / total
            w_max = max(w_max, weights[i, :n].max(initial=0.0))
        else:  # torch leaves the weights of an all-zero sum as they are, out of the precision choice
            weights[i, :n] = w
        first[i] = lo
    precision = 0
    while precision < 22 and int(0.5 + w_max * (1 << (precision + 1))) < (1 << 15):
        precision += 1
    scaled = weights * (1 << precision)
    fixed = np.where(scaled < 0, np.trunc(scaled - 0.5), np.trunc(scaled + 0.5)).astype(np.int64)
    return first, fixed, precision


def _resample_axis(image: np.ndarray, out_size: int, axis: int) -> np.ndarray:
    """uint8 [H, W, C] resampled along ``axis`` (0 rows, 1 columns) with torch's integer arithmetic:
    acc = Σ_taps pixel · weight in int32 (torch's accumulator), then (acc + 2^(precision-1)) >> precision,
    clamped to [0, 255]."""
    in_size = image.shape[axis]
    first, fixed, precision = _axis_taps(in_size, out_size)
    weights = fixed.astype(np.int32)
    shape = list(image.shape)
    shape[axis] = out_size
    acc = np.full(shape, 1 << (precision - 1), dtype=np.int32)
    for t in range(weights.shape[1]):  # taps past the image edge have weight 0: clip their index
        taps = np.take(image, np.minimum(first + t, in_size - 1), axis=axis).astype(np.int32)
        acc += taps * (weights[:, t, None, None] if axis == 0 else weights[None, :, t, None])
    return np.clip(acc >> precision, 0, 255).astype(np.uint8)


def resize_bicubic_aa(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 [H, W, C] -> uint8 [height, width, C] as torchvision's antialiased bicubic resize on CPU
    (width pass first, then height; an unchanged size is returned untouched, as torchvision does)."""
    if image.shape[:2] == (height, width):
        return np.ascontiguousarray(image)
    if image.shape[1] != width:
        image = _resample_axis(image, width, axis=1)
    if image.shape[0] != height:
        image = _resample_axis(image, height, axis=0)
    return np.ascontiguousarray(image)


# ------------------------------------------------------------------------------------------ patches
def grid_thw(height: int, width: int) -> tuple[int, int, int]:
    """(t, gh, gw) of one still image: one temporal patch, 16-px patches."""
    if height % FACTOR or width % FACTOR:
        raise ObservationError(
            f"image {height}x{width} is not a multiple of {FACTOR} px — run the image chain first"
        )
    return 1, height // PATCH_SIZE, width // PATCH_SIZE


def patch_rows(image: np.ndarray) -> np.ndarray:
    """uint8 [h', w', 3] -> uint8 [gh·gw, 1536]: rows in merge-block order (block row, block col, intra
    row, intra col), each row (channel, time, y, x) with both time slices equal."""
    _, gh, gw = grid_thw(image.shape[0], image.shape[1])
    m, p = MERGE_SIZE, PATCH_SIZE
    x = image.reshape(gh // m, m, p, gw // m, m, p, 3)  # [bh, ih, y, bw, iw, x, c]
    x = x.transpose(0, 3, 1, 4, 6, 2, 5)  # [bh, bw, ih, iw, c, y, x]
    x = np.broadcast_to(x[:, :, :, :, :, None], x.shape[:5] + (TEMPORAL_PATCH_SIZE, p, p))  # [.., c, t, y, x]
    return np.ascontiguousarray(x).reshape(gh * gw, PATCH_DIM)


def normalize_patches(rows: np.ndarray) -> np.ndarray:
    """uint8 patch rows -> float32 (x - 127.5) / 127.5 (mean = std = 0.5 with the 1/255 rescale fused)."""
    return (rows.astype(np.float32) - np.float32(127.5)) / np.float32(127.5)
