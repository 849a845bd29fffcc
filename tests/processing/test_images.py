"""The eval image chain: output sizes (spec §5.1 table) and the exact step order."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from gr00t_trt.base.errors import ObservationError
from gr00t_trt.processing.images import ImageTransform, preprocess_image, processed_image_size


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ((224, 224), (252, 252)),
        ((256, 256), (252, 252)),
        ((480, 640), (252, 336)),
        ((240, 320), (252, 336)),
        ((256, 320), (252, 308)),
        ((720, 1280), (252, 448)),
        ((360, 640), (252, 448)),
    ],
)
def test_size_table(frame, expected):
    assert processed_image_size(*frame) == expected
    image = np.random.default_rng(0).integers(0, 256, size=frame + (3,), dtype=np.uint8)
    out = preprocess_image(image)
    assert out.shape == expected + (3,) and out.dtype == np.uint8 and out.flags.c_contiguous


def test_sizes_without_pixels_match_the_chain():
    rng = np.random.default_rng(1)
    transform = ImageTransform()
    for _ in range(25):
        h, w = (int(v) for v in rng.integers(20, 900, size=2))
        if max(h, w) / min(h, w) > 20:
            continue
        image = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        assert transform(image).shape[:2] == transform.output_size(h, w), (h, w)


def test_exact_steps_for_a_480x640_frame():
    """INTER_AREA to 256x341, centre crop 243x323 at (6, 9), INTER_AREA to 256x340, PIL bicubic to 252x336."""
    image = np.random.default_rng(2).integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
    step = cv2.resize(image, (341, 256), interpolation=cv2.INTER_AREA)
    step = step[6 : 6 + 243, 9 : 9 + 323]
    step = cv2.resize(step, (340, 256), interpolation=cv2.INTER_AREA)
    expected = np.asarray(Image.fromarray(step).resize((336, 252), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(preprocess_image(image), expected)


def test_exact_steps_for_a_square_frame_that_needs_no_first_resize():
    image = np.random.default_rng(3).integers(0, 256, size=(256, 256, 3), dtype=np.uint8)
    step = image[6 : 6 + 243, 6 : 6 + 243]
    step = cv2.resize(step, (256, 256), interpolation=cv2.INTER_AREA)
    expected = np.asarray(Image.fromarray(step).resize((252, 252), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(preprocess_image(image), expected)


def test_small_frames_are_upscaled():
    assert processed_image_size(64, 48) == (336, 252)
    assert preprocess_image(np.full((64, 48, 3), 7, np.uint8)).shape == (336, 252, 3)


def test_constant_image_stays_constant():
    out = preprocess_image(np.full((300, 400, 3), (10, 200, 30), np.uint8))
    assert (out == np.array([10, 200, 30], np.uint8)).all()


def test_settings_change_the_sizes():
    assert processed_image_size(480, 640, shortest_edge=224) == (224, 308)
    assert processed_image_size(256, 256, crop_fraction=1.0) == (252, 252)
    assert ImageTransform(256, 0.95, factor=14).output_size(256, 256) == (252, 252)
    assert ImageTransform(300, 0.95, factor=28).output_size(300, 300) == (308, 308)


def test_from_settings_uses_the_processor_spec(make_spec):
    spec = make_spec(lambda kw, st, ids: kw.update(shortest_image_edge=224, crop_fraction=0.9))
    transform = ImageTransform.from_settings(spec.settings)
    assert (transform.shortest_edge, transform.crop_fraction) == (224, 0.9)
    assert processed_image_size(480, 640, spec) == processed_image_size(480, 640, spec.settings) == (224, 308)
    assert processed_image_size(480, 640, make_spec()) == (252, 336)
    assert processed_image_size(480, 640, spec, shortest_edge=256, crop_fraction=0.95) == (252, 336)
    image = np.zeros((480, 640, 3), np.uint8)
    assert preprocess_image(image, spec).shape == (224, 308, 3)


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.zeros((32, 32, 3), np.float32), r"uint8 \[H, W, 3\], got float32"),
        (np.zeros((32, 32, 4), np.uint8), r"uint8 \[H, W, 3\], got uint8 \[32, 32, 4\]"),
        (np.zeros((32, 32), np.uint8), r"uint8 \[H, W, 3\]"),
    ],
)
def test_bad_images(image, match):
    with pytest.raises(ObservationError, match=match):
        preprocess_image(image)


def test_extreme_aspect_ratio_is_refused():
    with pytest.raises(ObservationError, match="aspect ratio"):
        processed_image_size(2, 1000)


@pytest.mark.parametrize("width", [8000, 20000])
def test_thin_frames_are_refused_before_any_resize(width, monkeypatch):
    """A 24 KB 1x8000 frame used to be upscaled to 256x2048000 (3.2 GB, 10 s); 1x20000 raised cv2.error."""
    import gr00t_trt.processing.images as images

    def no_resize(*args, **kwargs):
        raise AssertionError("cv2.resize must not run on a frame that will be refused")

    monkeypatch.setattr(images.cv2, "resize", no_resize)
    with pytest.raises(ObservationError, match=rf"camera frame 1x{width} has aspect ratio {width}:1 — expected at most 200:1") as info:
        preprocess_image(np.zeros((1, width, 3), np.uint8))
    assert "\n" not in str(info.value)


def test_a_frame_at_the_limit_that_crosses_it_when_rounded_says_so():
    """issue 17, item 18: 1x200 used to be refused as "aspect ratio 200 exceeds 200"."""
    with pytest.raises(ObservationError, match=r"aspect ratio 200\.\d\d:1 after resizing and cropping .* expected at most 200:1"):
        processed_image_size(1, 200)
