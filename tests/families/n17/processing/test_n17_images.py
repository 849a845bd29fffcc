"""N1.7 image chain (spec §4.1-4.2): the size/token table, torch's uint8 antialiased bicubic reproduced bit
for bit, the patch layout of transformers' Qwen2-VL processor, and the whole chain against an independent
implementation of the original (albumentations + the resize torchvision runs + transformers' processor)."""

from __future__ import annotations

import numpy as np
import pytest

from gr00t_trt.base.errors import ObservationError
from gr00t_trt.families.n17.processing.images import (
    N17ImageTransform,
    grid_thw,
    letterbox,
    normalize_patches,
    patch_rows,
    resize_bicubic_aa,
    smart_resize,
)
from gr00t_trt.families.n17.processing.prompt import image_token_count

from .conftest import require

#: spec §4.2: camera frame -> size after §4.1 -> H'xW' -> image tokens (no letterbox)
SIZE_TABLE = [
    ((256, 256), (256, 256), 64),
    ((224, 224), (256, 256), 64),
    ((480, 640), (256, 352), 88),
    ((240, 320), (256, 352), 88),
    ((256, 320), (256, 320), 80),
    ((180, 320), (256, 448), 112),
    ((360, 640), (256, 448), 112),
    ((720, 1280), (256, 448), 112),
    ((480, 848), (256, 448), 112),
    ((240, 424), (256, 448), 112),
]
#: six+ camera sizes for the reference comparison: square, 4:3, 5:4, 16:9 (three), portrait, odd
REFERENCE_SIZES = [
    (256, 256),
    (224, 224),
    (480, 640),
    (256, 320),
    (180, 320),
    (720, 1280),
    (480, 848),
    (640, 480),
    (301, 517),
]


def frame(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A camera-like frame: smooth gradients plus noise (exercises both rounding and edges)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([np.sin(xx / (7 + c) + yy / 13) for c in range(3)], -1) * 100 + 127
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize(("camera", "size", "tokens"), SIZE_TABLE)
def test_size_and_token_table(camera, size, tokens):
    transform = N17ImageTransform()
    assert transform.output_size(*camera) == size
    assert image_token_count(*size) == tokens
    assert grid_thw(*size) == (1, size[0] // 16, size[1] // 16)
    out = transform(frame(*camera))
    assert out.shape == size + (3,) and out.dtype == np.uint8 and out.flags.c_contiguous
    # letterbox: every frame becomes 256x256, 64 tokens
    assert N17ImageTransform(letter_box=True).output_size(*camera) == (256, 256)


def test_letterbox_puts_the_smaller_bar_first():
    image = np.full((3, 6, 3), 200, np.uint8)
    out = letterbox(image)
    assert out.shape == (6, 6, 3)
    assert (out[:1] == 0).all() and (out[1:4] == 200).all() and (out[4:] == 0).all()
    assert letterbox(np.full((5, 2, 3), 9, np.uint8))[:, :1].max() == 0
    assert letterbox(np.full((5, 2, 3), 9, np.uint8))[:, 1:3].min() == 9


@pytest.mark.parametrize(
    ("src", "dst"),
    [((256, 340), (256, 352)), ((256, 455), (256, 448)), ((300, 300), (288, 288)), ((245, 333), (256, 320)),
     ((100, 90), (64, 256)), ((512, 700), (96, 320)), ((7, 9), (32, 64))],
)  # fmt: skip
def test_bicubic_matches_torch_uint8_kernel(src, dst):
    """The exact op torchvision.transforms.v2.functional.resize runs for a uint8 CPU tensor, bicubic,
    antialias=True: torch.nn.functional.interpolate on uint8 (torchvision's resize_image, read in 0.28)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(sum(src) + sum(dst))
    for image in (
        frame(*src),
        rng.integers(0, 256, src + (3,), dtype=np.uint8),
        (rng.integers(0, 2, src + (3,)) * 255).astype(np.uint8),
    ):
        tensor = torch.from_numpy(image).permute(2, 0, 1)[None]
        expected = torch.nn.functional.interpolate(
            tensor, size=list(dst), mode="bicubic", align_corners=False, antialias=True
        )
        np.testing.assert_array_equal(resize_bicubic_aa(image, *dst), expected[0].permute(1, 2, 0).numpy())


def test_unchanged_size_is_returned_untouched():
    image = frame(256, 320)
    np.testing.assert_array_equal(resize_bicubic_aa(image, 256, 320), image)


def qwen_processor():
    """transformers' numpy/PIL Qwen2-VL image processor with Cosmos-Reason2-2B's preprocessor_config values."""
    module = pytest.importorskip("transformers.models.qwen2_vl.image_processing_pil_qwen2_vl")
    return module.Qwen2VLImageProcessorPil(
        size={"shortest_edge": 65536, "longest_edge": 16777216},
        patch_size=16, temporal_patch_size=2, merge_size=2, image_mean=[0.5] * 3, image_std=[0.5] * 3,
    )  # fmt: skip


@pytest.mark.parametrize("size", [(256, 256), (256, 352), (256, 448), (320, 256)])
def test_patch_layout_matches_transformers(size):
    image = frame(*size, seed=5)
    raw = qwen_processor()(image, return_tensors="np", do_rescale=False, do_normalize=False)
    rows = patch_rows(image)
    assert rows.dtype == np.uint8 and rows.shape == (size[0] * size[1] // 256, 1536)
    np.testing.assert_array_equal(raw["pixel_values"], rows.astype(np.float32))
    assert raw["image_grid_thw"].tolist() == [list(grid_thw(*size))]
    # both temporal halves of a row are the same pixels
    split = rows.reshape(-1, 3, 2, 256)
    np.testing.assert_array_equal(split[:, :, 0], split[:, :, 1])
    normalized = qwen_processor()(image, return_tensors="np")["pixel_values"]
    np.testing.assert_allclose(normalize_patches(rows), normalized, rtol=0, atol=1e-6)


def reference_chain(image: np.ndarray, letter_box: bool) -> np.ndarray:
    """The original eval chain from other people's code: GR00T's albumentations pipeline (LetterBoxPad,
    SmallestMaxSize, FractionalCenterCrop, SmallestMaxSize), then transformers' smart_resize and the
    torchvision uint8 bicubic resize (torch.nn.functional.interpolate, which torchvision calls)."""
    albumentations = require("albumentations", "n17ref")
    cv2 = pytest.importorskip("cv2")
    torch = pytest.importorskip("torch")
    smart_resize = pytest.importorskip(
        "transformers.models.qwen2_vl.image_processing_pil_qwen2_vl"
    ).smart_resize
    if letter_box and image.shape[0] != image.shape[1]:
        side = max(image.shape[:2])
        ph, pw = side - image.shape[0], side - image.shape[1]
        image = cv2.copyMakeBorder(
            image, ph // 2, ph - ph // 2, pw // 2, pw - pw // 2, cv2.BORDER_CONSTANT, value=0
        )
    image = albumentations.SmallestMaxSize(max_size=256, interpolation=cv2.INTER_AREA)(image=image)["image"]
    h, w = image.shape[:2]
    ch, cw = max(1, int(h * 0.95)), max(1, int(w * 0.95))
    image = image[(h - ch) // 2 : (h - ch) // 2 + ch, (w - cw) // 2 : (w - cw) // 2 + cw]
    image = albumentations.SmallestMaxSize(max_size=256, interpolation=cv2.INTER_AREA)(image=image)["image"]
    size = smart_resize(image.shape[0], image.shape[1], factor=32, min_pixels=65536, max_pixels=16777216)
    if size != image.shape[:2]:
        tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
        tensor = torch.nn.functional.interpolate(
            tensor, size=list(size), mode="bicubic", align_corners=False, antialias=True
        )
        image = tensor[0].permute(1, 2, 0).numpy()
    return image


@pytest.mark.parametrize("camera", REFERENCE_SIZES)
def test_chain_matches_the_original(camera):
    image = frame(*camera, seed=camera[1])
    expected = reference_chain(image, letter_box=False)
    out = N17ImageTransform()(image)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_allclose(
        normalize_patches(patch_rows(out)),
        qwen_processor()(expected, return_tensors="np")["pixel_values"],
        atol=1e-6,
        rtol=0,
    )


@pytest.mark.parametrize("camera", [(480, 640), (720, 1280), (640, 480), (256, 256)])
def test_letterbox_chain_matches_the_original(camera):
    image = frame(*camera, seed=7)
    np.testing.assert_array_equal(
        N17ImageTransform(letter_box=True)(image), reference_chain(image, letter_box=True)
    )


def test_bad_images():
    transform = N17ImageTransform()
    with pytest.raises(ObservationError, match=r"image must be uint8 \[H, W, 3\], got float32 \[4, 4, 3\]"):
        transform(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(
        ObservationError, match=r"camera frame 2x900 has aspect ratio 450:1 — expected at most 200:1"
    ):
        transform.output_size(2, 900)
    with pytest.raises(ObservationError, match=r"aspect ratio 450:1"):  # also letterboxed: a 900² canvas per frame
        N17ImageTransform(letter_box=True)(np.zeros((2, 900, 3), np.uint8))
    with pytest.raises(ObservationError, match=r"image 250x256 is not a multiple of 32 px"):
        patch_rows(np.zeros((250, 256, 3), np.uint8))


def test_smart_resize_matches_transformers():
    reference = pytest.importorskip("transformers.models.qwen2_vl.image_processing_pil_qwen2_vl").smart_resize
    rng = np.random.default_rng(11)
    sizes = [(256, 340), (256, 455), (256, 452), (100, 100), (80, 5000), (5000, 5000)]
    sizes += [tuple(int(v) for v in rng.integers(24, 6000, size=2)) for _ in range(300)]
    for h, w in sizes:
        if max(h, w) / min(h, w) <= 200:
            assert smart_resize(h, w) == reference(h, w, factor=32, min_pixels=65536, max_pixels=16777216), (
                h,
                w,
            )
    assert smart_resize(256, 340) == (256, 352) and smart_resize(100, 100) == (256, 256)
