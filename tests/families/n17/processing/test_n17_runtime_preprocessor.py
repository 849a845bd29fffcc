"""N1.7's runtime preprocessor (make_preprocessor on an export-like folder): N1.6's surface and bounds,
decoding per spec §5.5 (q01/q99, RELATIVE keys with the relative stats' min/max, per-embodiment horizon),
and synthetic observations with two frames per view."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from gr00t_trt.base.errors import CheckpointError, ManifestError, ObservationError
from gr00t_trt.families.n17.config import preset_config
from gr00t_trt.families.n17.processing.tokenizer import Qwen3VLTokenizer, save_qwen3_vl_tokenizer
from gr00t_trt.families.n17.runtime_parts import make_preprocessor
from gr00t_trt.families.n17.synthetic import write_processor_files
from gr00t_trt.processing.observations import synthetic_observation

DROID = "oxe_droid_relative_eef_relative_joint"
CONFIG = preset_config("tiny")  # max_state_dim = max_action_dim = 24, action horizon 16


def _manifest(max_seq: int = 600, **changes) -> SimpleNamespace:
    fields = {"pixels_per_token": 1024, "dynamic_dims": {"S": [1, 300, max_seq]}, "dims": {"Ds": CONFIG.max_state_dim},
              "tokens": {}}
    return SimpleNamespace(**{**fields, **changes})


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory, qwen_tokenizer):
    folder = tmp_path_factory.mktemp("n17_export")
    write_processor_files(folder, CONFIG, seed=0)
    save_qwen3_vl_tokenizer(qwen_tokenizer, folder)
    return folder


@pytest.fixture
def pre(export_dir):
    return make_preprocessor(export_dir, _manifest(), max_batch=2)


class _CountingTransform:
    """The image chain, counting the frames it resizes (output_size, from shapes, is not counted)."""

    def __init__(self, transform):
        self.transform, self.calls = transform, 0

    def output_size(self, height, width):
        return self.transform.output_size(height, width)

    def __call__(self, image):
        self.calls += 1
        return self.transform(image)


def test_droid_two_frames_per_view_through_the_preprocessor(pre):
    obs = synthetic_observation(pre, DROID, seed=1, batch=2, image_sizes=((256, 352), (256, 256)))
    emb = pre.spec.embodiment(DROID)
    assert emb.num_frames == 2
    assert {k: v.shape for k, v in obs["video"].items()} == {
        "exterior_image_1_left": (2, 2, 480, 640, 3), "wrist_image_left": (2, 2, 256, 256, 3)}
    sizes = [(256, 352), (256, 256)] * 4  # sample, then frame, then view
    assert pre.image_sizes(obs, DROID) == sizes
    inputs = pre(obs, DROID)
    assert [img.shape[:2] for img in inputs.images] == sizes
    assert inputs.position_ids.shape == (3, *inputs.input_ids.shape) and inputs.original_mask.all()
    assert inputs.image_mask.sum() == 2 * 2 * (88 + 64)  # 88 tokens for 256x352, 64 for 256x256, per frame
    assert inputs.state.shape == (2, 1, 24) and inputs.embodiment_id.tolist() == [24, 24]
    assert pre.cache_bytes_used > 0 and (pre.cache_misses, pre.cache_hits) == (1, 1)  # one instruction, twice
    pre.reset()
    assert pre.cache_bytes_used == 0


def test_batch_over_the_bound_is_refused_before_any_image_is_resized(pre):
    spy = pre.image_transform = _CountingTransform(pre.image_transform)
    obs = synthetic_observation(pre, "libero_sim", seed=2, batch=3)
    with pytest.raises(ObservationError, match=r"batch size B is 3, the export supports 1\.\.2") as info:
        pre(obs, "libero_sim")
    assert spy.calls == 0 and "\n" not in str(info.value)
    pre(synthetic_observation(pre, "libero_sim", seed=2, batch=2), "libero_sim")
    assert spy.calls == 2 * 2  # two samples x two views, one frame each


def test_prompt_bounds_refuse_before_tokenising_and_before_resizing(export_dir, monkeypatch):
    pre = make_preprocessor(export_dir, _manifest(max_seq=140))  # libero_sim: 2 views x 64 tokens + 9 + text
    spy = pre.image_transform = _CountingTransform(pre.image_transform)
    calls = []
    encode = Qwen3VLTokenizer.encode
    monkeypatch.setattr(Qwen3VLTokenizer, "encode", lambda self, text: calls.append(text) or encode(self, text))
    square = ((256, 256),)
    obs = synthetic_observation(pre, "libero_sim", seed=3, image_sizes=square, instruction="go")
    assert pre(obs, "libero_sim").input_ids.shape == (1, 137 + 1)
    assert len(calls) == 1 and spy.calls == 2
    long = synthetic_observation(pre, "libero_sim", seed=3, image_sizes=square, instruction="pick up the apple and the pear")
    with pytest.raises(ObservationError, match=r"prompt of this instruction is 1\d\d tokens .* more than the 140"):
        pre(long, "libero_sim")
    assert spy.calls == 2 and len(pre._cache) == 1  # refused before resizing, and never cached
    huge = synthetic_observation(pre, "libero_sim", seed=3, image_sizes=square, instruction="x" * 100_000)
    calls.clear()
    with pytest.raises(ObservationError, match=r"instruction is 100,000 bytes, more than the 140 tokens"):
        pre(huge, "libero_sim")
    assert calls == [] and spy.calls == 2  # refused before the tokenizer saw it


def _stats(export_dir, tag):
    return json.loads((export_dir / "statistics.json").read_text())[tag]


def test_decode_uses_q01_q99_relative_min_max_and_the_embodiments_horizon(pre, export_dir):
    obs = synthetic_observation(pre, DROID, seed=4, batch=2, image_sizes=((256, 256),))
    inputs = pre(obs, DROID)
    pred = np.random.default_rng(5).uniform(-1.2, 1.2, (2, CONFIG.action_horizon, CONFIG.max_action_dim))
    actions = pre.decode(pred.astype(np.float32), inputs)
    stats, x = _stats(export_dir, DROID), np.clip(pred.astype(np.float32).astype(np.float64), -1, 1)
    assert {k: v.shape for k, v in actions.items()} == {"eef_9d": (2, 16, 9), "gripper_position": (2, 16, 1),
                                                        "joint_position": (2, 16, 7)}
    assert all(v.dtype == np.float32 for v in actions.values())
    # absolute key (order eef 9, gripper 1, joints 7): q01/q99, not min/max
    q01, q99 = (np.asarray(stats["action"]["gripper_position"][k]) for k in ("q01", "q99"))
    np.testing.assert_allclose(actions["gripper_position"], (x[:, :, 9:10] + 1) / 2 * (q99 - q01) + q01, atol=1e-6)
    # RELATIVE joints: the relative stats' per-step min/max, plus the last raw state
    lo, hi = (np.asarray(stats["relative_action"]["joint_position"][k])[:16] for k in ("min", "max"))
    want = (x[:, :, 10:17] + 1) / 2 * (hi - lo) + lo + obs["state"]["joint_position"][:, -1:, :]
    np.testing.assert_allclose(actions["joint_position"], want, rtol=1e-5, atol=1e-6)
    # a short-horizon embodiment decodes its own horizon from the model's 16 steps
    widowx = pre(synthetic_observation(pre, "simpler_env_widowx", seed=6), "simpler_env_widowx")
    short = pre.decode(pred[:1].astype(np.float32), widowx)
    assert {v.shape for v in short.values()} == {(1, 8, 1)}
    with pytest.raises(ObservationError, match=r"action_pred must be \[B=1, H, D\], got \[2, 16, 24\]"):
        pre.decode(pred, widowx)


def test_flat_observations_decode_to_action_keys(pre):
    nested = synthetic_observation(pre, "libero_sim", seed=7)
    flat = {f"video.{k}": v for k, v in nested["video"].items()}
    flat.update({f"state.{k}": v for k, v in nested["state"].items()})
    flat.update({k: [t[0] for t in v] for k, v in nested["language"].items()})
    inputs = pre(flat, "libero_sim")
    actions = pre.decode(np.zeros((1, 16, 24), np.float32), inputs)
    assert sorted(actions) == sorted(f"action.{k}" for k in pre.spec.embodiment("libero_sim").action_keys)


def test_export_mismatches_are_one_line_errors(export_dir, tmp_path):
    with pytest.raises(ManifestError, match="pixels_per_token is 784, N1.7's image tokens are 1024"):
        make_preprocessor(export_dir, _manifest(pixels_per_token=784))
    with pytest.raises(CheckpointError, match="max_state_dim 24 differs from the model's padded state dim Ds=132"):
        make_preprocessor(export_dir, _manifest(dims={"Ds": 132}))
    with pytest.raises(ManifestError, match="image_token_index 151669 is not the tokenizer's <|image_pad|> id 151655"):
        make_preprocessor(export_dir, _manifest(tokens={"image_token_index": 151669}))
    write_processor_files(tmp_path, CONFIG, seed=0)  # no tokenizer beside the files: no Hub look-up
    with pytest.raises(Exception, match="no tokenizer in"):
        make_preprocessor(tmp_path, _manifest())


def test_synthetic_observation_sizes_frames_by_the_given_chain(pre, two_frame_spec):
    with pytest.raises(ObservationError, match="no camera frame size found that preprocesses to 252x336"):
        synthetic_observation(pre, "libero_sim", image_sizes=((252, 336),))  # an N1.6 size, not an N1.7 one
    obs = synthetic_observation(pre, "libero_sim", image_sizes=((256, 448),))
    assert obs["video"]["image"].shape == (1, 1, 720, 1280, 3)  # 16:9 → 256x448
    # N1.6's chain by default: a spec alone (two frames per view read from the spec, no family branch)
    n16 = synthetic_observation(two_frame_spec, "libero_panda", image_sizes=((252, 336),))
    assert {v.shape for v in n16["video"].values()} == {(1, 2, 480, 640, 3)}
    assert synthetic_observation(two_frame_spec, "libero_panda")["video"].keys() == n16["video"].keys()
