"""Observation -> N1.7 host feeds: frame order (time, then view), two frames per view, prompt ids,
left padding and bucket padding, M-RoPE ids, patches, state; one-line errors; no torch."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from gr00t_trt.base.errors import EmbodimentError, ObservationError
from gr00t_trt.families.n17.processing.feeds import N17HostProcessor
from gr00t_trt.families.n17.processing.images import N17ImageTransform, normalize_patches, patch_rows
from gr00t_trt.families.n17.processing.prompt import prompt_ids
from gr00t_trt.families.n17.processing.rope import mrope_position_ids

TAG = "libero_panda"
TEXTS = ["Pick up the cup, then the plate", "go"]


def observation(spec, batch: int = 2, size=(180, 320), frames: int = 2) -> dict:
    """Each (sample, frame, view) image has its own flat colour, so the order can be read back."""
    emb = spec.embodiment(TAG)
    video = {}
    for v, view in enumerate(emb.video_keys):
        arr = np.zeros((batch, frames, *size, 3), np.uint8)
        for b in range(batch):
            for t in range(frames):
                arr[b, t] = 10 + 100 * b + 30 * t + 7 * v
        video[view] = arr
    rng = np.random.default_rng(0)
    state = {k: rng.uniform(emb.state_norm[k].min, emb.state_norm[k].max, (batch, 1, emb.state_norm[k].dim)).astype(np.float32)
             for k in emb.state_keys}  # fmt: skip
    return {"video": video, "state": state, "language": {emb.language_key: [[t] for t in TEXTS[:batch]]}}


@pytest.fixture
def processor(two_frame_spec, qwen_tokenizer):
    return N17HostProcessor(two_frame_spec, qwen_tokenizer)


def test_two_frames_per_view_batch_of_two(processor, qwen_tokenizer):
    obs = observation(processor.spec)
    out = processor(obs, TAG)
    # frames: sample, then time, then view (DROID order [t-15 view0, t-15 view1, t view0, t view1])
    colours = [int(img[0, 0, 0]) for img in out.images]
    assert colours == [10 + 100 * b + 30 * t + 7 * v for b in range(2) for t in range(2) for v in range(2)]
    assert all(img.shape == (256, 448, 3) for img in out.images) and out.image_grids == [(1, 16, 28)] * 8
    # prompts: images first, left padding with <|endoftext|>, S = 461 + L for 2 views x 2 frames of 16:9
    lengths = [461 + len(qwen_tokenizer.encode(t.lower().replace(",", ""))) for t in TEXTS]
    assert out.input_ids.shape == (2, max(lengths)) and out.input_ids.dtype == np.int64
    for b, text in enumerate(TEXTS):
        expected = prompt_ids(qwen_tokenizer, text, [(256, 448)] * 4)
        assert len(expected) == lengths[b]
        assert out.input_ids[b, -len(expected) :].tolist() == expected.tolist()
        assert (out.input_ids[b, : -len(expected)] == 151643).all() and not out.attention_mask[
            b, : -len(expected)
        ].any()
    assert out.attention_mask.sum(1).tolist() == lengths
    assert out.original_mask.all()  # no bucket: every column is the original's
    assert out.image_mask.sum() == 2 * 4 * 112 and (out.input_ids[out.image_mask] == 151655).all()
    grids = [out.image_grids[4 * b : 4 * b + 4] for b in range(2)]
    np.testing.assert_array_equal(
        out.position_ids, mrope_position_ids(out.input_ids, out.attention_mask, grids)
    )
    assert out.pixel_values[3].dtype == np.float32 and out.pixel_values[3].shape == (448, 1536)
    frame = obs["video"]["wrist_image"][0, 1]
    np.testing.assert_array_equal(
        out.pixel_values[3], normalize_patches(patch_rows(N17ImageTransform()(frame)))
    )
    assert out.state.shape == (2, 1, 132) and out.state.dtype == np.float32
    assert out.embodiment_id.tolist() == [processor.spec.embodiment(TAG).id] * 2


def test_flat_observation_gives_the_same_feeds(processor):
    nested = observation(processor.spec)
    emb = processor.spec.embodiment(TAG)
    flat = {f"video.{k}": v for k, v in nested["video"].items()}
    flat.update({f"state.{k}": v for k, v in nested["state"].items()})
    flat[emb.language_key] = TEXTS
    a, b = processor(nested, TAG), processor(flat, TAG)
    assert b.flat and not a.flat
    for name in ("input_ids", "attention_mask", "original_mask", "image_mask", "position_ids", "state"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_letterbox_setting(two_frame_spec, qwen_tokenizer):
    out = N17HostProcessor(two_frame_spec, qwen_tokenizer, letter_box=True)(observation(two_frame_spec), TAG)
    assert all(img.shape == (256, 256, 3) for img in out.images)
    assert out.input_ids.shape[1] == 269 + len(qwen_tokenizer.encode("pick up the cup then the plate"))


def test_bucket_padding_is_marked(processor):
    obs = observation(processor.spec)
    plain = processor(obs, TAG)
    extra = 5
    padded = processor(obs, TAG, seq_len=plain.input_ids.shape[1] + extra)
    assert not padded.original_mask[:, :extra].any() and padded.original_mask[:, extra:].all()
    assert not padded.attention_mask[:, :extra].any() and (padded.input_ids[:, :extra] == 151643).all()
    assert (padded.position_ids[:, :, :extra] == 1).all()
    for name in ("input_ids", "attention_mask", "image_mask"):
        np.testing.assert_array_equal(getattr(padded, name)[:, extra:], getattr(plain, name))
    np.testing.assert_array_equal(padded.position_ids[:, :, extra:], plain.position_ids)


def test_prompt_cache(processor):
    first = processor.prompt("go", ((256, 256),))
    assert processor.prompt("go", ((256, 256),)) is first
    assert processor.prompt("go", ((256, 448),)) is not first


def test_bad_observations(processor):
    obs = observation(processor.spec)
    with pytest.raises(
        ObservationError, match=r"longest prompt of this batch is \d+ tokens .* bucket length 100"
    ):
        processor(obs, TAG, seq_len=100)
    with pytest.raises(
        ObservationError,
        match=r"video\['image'\] must hold T=2 frames in axis 1, got shape \[2, 1, 180, 320, 3\]",
    ):
        processor(observation(processor.spec, frames=1), TAG)
    with pytest.raises(EmbodimentError, match=r"nope"):
        processor(obs, "nope")
    del obs["video"]["image"]
    with pytest.raises(ObservationError, match=r"observation\['video'\]: missing \['image'\]"):
        processor(obs, TAG)


def test_runs_without_torch(qwen_bpe_dir, tmp_path):
    """Like N1.6's processing: importable and usable with torch, transformers and torchvision blocked."""
    tests_dir = Path(__file__).resolve().parents[3]
    code = f"""
        import sys
        for name in ("torch", "transformers", "torchvision"):
            sys.modules[name] = None
        sys.path.insert(0, {str(tests_dir)!r})
        from pathlib import Path
        import numpy as np
        from families.n17.processing.conftest import build_two_frame_spec, valid_state
        from gr00t_trt.families.n17.processing.feeds import N17HostProcessor
        from gr00t_trt.families.n17.processing.tokenizer import load_qwen3_vl_tokenizer
        spec = build_two_frame_spec(Path({str(tmp_path)!r}))
        proc = N17HostProcessor(spec, load_qwen3_vl_tokenizer({str(qwen_bpe_dir)!r}))
        emb = spec.embodiment("libero_panda")
        obs = {{"video": {{v: np.zeros((1, 2, 256, 256, 3), np.uint8) for v in emb.video_keys}},
               "state": valid_state(emb),
               "language": {{emb.language_key: [["go"]]}}}}
        out = proc(obs, "libero_panda")
        assert out.input_ids.shape == (1, 269 + 1), out.input_ids.shape
        from gr00t_trt.families.n17.grids import N17Grids  # the runtime parts too
        import gr00t_trt.families.n17.runtime_parts
        grids = N17Grids(np.zeros((4, 4, 8), np.float32), merge=2, rotary_dim=8, rope_theta=1e4)
        assert grids("rotary_cos", 2, 3).shape == (4, 6, 8)
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers") and sys.modules[m] is not None)
        assert not leaked, leaked
        print("ok")
        """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
