"""The robot-facing Preprocessor: nested and flat observations, image order, prompt ids (golden ids
with the real tokenizer), caching, decoding, and one clear error per bad input."""

from __future__ import annotations

import numpy as np
import pytest

from gr00t_trt.base.errors import CheckpointError, EmbodimentError, ObservationError, TokenizerError
from gr00t_trt.families.n16.presets import preset_config
from gr00t_trt.families.n16.processing.preprocess import Preprocessor
from gr00t_trt.families.n16.synthetic_processor import write_processor_files
from gr00t_trt.processing.images import processed_image_size
from gr00t_trt.processing.preprocess import ModelInputs
from gr00t_trt.processing.tokenizer import save_tokenizer

from .conftest import random_state
from .test_tokenizer import GOLDEN_108

LIBERO_LANG = "annotation.human.action.task_description"


@pytest.fixture(scope="module")
def pre(synthetic_dir, tiny_config) -> Preprocessor:
    return Preprocessor.from_dir(
        synthetic_dir,
        max_state_dim=tiny_config.max_state_dim,
        image_token_index=tiny_config.backbone.image_token_index,
        pixels_per_token=tiny_config.patch_tokens_per_image_pixel,
    )


def libero_obs(pre, batch=2, seed=0, sizes=((480, 640), (256, 256))) -> dict:
    """Nested observation; every image is a constant colour encoding (sample, view) for order checks."""
    spec = pre.spec.embodiment("libero_panda")
    video = {}
    for v, (view, (h, w)) in enumerate(zip(spec.video_keys, sizes, strict=True)):
        arr = np.zeros((batch, 1, h, w, 3), np.uint8)
        for b in range(batch):
            arr[b] = (10 * b + v, 100 + v, 200)
        video[view] = arr
    state = random_state(spec, batch, np.random.default_rng(seed))
    language = {LIBERO_LANG: [["Pick up the apple!"]] + [["stack the red block on the table next to the plate"]] * (batch - 1)}
    return {"video": video, "state": state, "language": language}


def flat(obs: dict) -> dict:
    out = {f"video.{k}": v for k, v in obs["video"].items()}
    out.update({f"state.{k}": v for k, v in obs["state"].items()})
    out.update({k: tuple(item[0] for item in v) for k, v in obs["language"].items()})
    return out


def test_nested_inputs(pre, tiny_config):
    obs = libero_obs(pre)
    inputs = pre(obs, "libero_panda")
    assert isinstance(inputs, ModelInputs) and inputs.embodiment == "libero_panda" and not inputs.flat
    b, s = inputs.input_ids.shape
    assert b == 2 and inputs.input_ids.dtype == np.int64
    assert inputs.attention_mask.dtype == bool and inputs.image_mask.dtype == bool
    np.testing.assert_array_equal(inputs.image_mask, inputs.input_ids == tiny_config.backbone.image_token_index)
    assert inputs.image_mask.sum(axis=1).tolist() == [108 + 81, 108 + 81]
    assert inputs.attention_mask[1].all() or inputs.attention_mask[0].all()
    assert not (inputs.image_mask & ~inputs.attention_mask).any()
    # LLM order: sample, then time, then view
    assert [img.shape for img in inputs.images] == [(252, 336, 3), (252, 252, 3)] * 2
    assert [tuple(img[0, 0]) for img in inputs.images] == [(0, 100, 200), (1, 101, 200), (10, 100, 200), (11, 101, 200)]
    assert inputs.state.shape == (2, 1, 16) and inputs.state.dtype == np.float32
    assert inputs.embodiment_id.dtype == np.int64 and inputs.embodiment_id.tolist() == [2, 2]
    assert set(inputs.raw_state) == {"eef_pose", "gripper"} and inputs.raw_state["eef_pose"].dtype == np.float32
    np.testing.assert_array_equal(inputs.raw_state["gripper"], obs["state"]["gripper"])
    assert pre.image_sizes(obs, "libero_panda") == [img.shape[:2] for img in inputs.images]


def test_left_padding(pre):
    inputs = pre(libero_obs(pre), "libero_panda")
    lengths = inputs.attention_mask.sum(axis=1)
    short = int(np.argmin(lengths))
    pad = inputs.input_ids.shape[1] - lengths[short]
    assert pad > 0 and not inputs.attention_mask[short, :pad].any()
    assert (inputs.input_ids[short, :pad] == pre.tokenizer.pad_token_id).all()


def test_flat_form_gives_the_same_inputs_and_prefixed_actions(pre):
    obs = libero_obs(pre)
    nested, flat_inputs = pre(obs, "libero_panda"), pre(flat(obs), "libero_panda")
    assert flat_inputs.flat
    np.testing.assert_array_equal(nested.input_ids, flat_inputs.input_ids)
    np.testing.assert_array_equal(nested.state, flat_inputs.state)
    for a, b in zip(nested.images, flat_inputs.images, strict=True):
        np.testing.assert_array_equal(a, b)
    pred = np.random.default_rng(1).uniform(-1, 1, size=(2, 16, 16)).astype(np.float32)
    nested_actions, flat_actions = pre.decode(pred, nested), pre.decode(pred, flat_inputs)
    assert sorted(nested_actions) == ["eef_pose", "gripper"]
    assert sorted(flat_actions) == ["action.eef_pose", "action.gripper"]
    for key, value in nested_actions.items():
        assert value.shape == (2, 16, nested.raw_state[key].shape[-1] if key == "eef_pose" else 1)
        assert value.dtype == np.float32
        np.testing.assert_array_equal(value, flat_actions[f"action.{key}"])


def test_language_forms(pre):
    obs = libero_obs(pre)
    reference = pre(obs, "libero_panda").input_ids
    obs["language"][LIBERO_LANG] = ["Pick up the apple!", "stack the red block on the table next to the plate"]
    np.testing.assert_array_equal(pre(obs, "libero_panda").input_ids, reference)
    f = flat(libero_obs(pre))
    f[LIBERO_LANG] = list(f[LIBERO_LANG])
    np.testing.assert_array_equal(pre(f, "libero_panda").input_ids, reference)


def test_coarse_action_alias_for_task(pre):
    spec = pre.spec.embodiment("new_embodiment")
    obs = {
        "video.front": np.zeros((1, 1, 240, 320, 3), np.uint8),
        **{f"state.{k}": v for k, v in random_state(spec, 1, np.random.default_rng(2)).items()},
        "annotation.human.coarse_action": ("open the drawer",),
    }
    inputs = pre(obs, "new_embodiment")
    assert inputs.embodiment_id.tolist() == [10] and inputs.flat
    assert sorted(pre.decode(np.zeros((1, 16, 16), np.float32), inputs)) == ["action.eef", "action.gripper"]
    assert pre.decode(np.zeros((1, 16, 16), np.float32), inputs)["action.eef"].shape == (1, 8, 6)


def test_instruction_ids_are_cached(pre):
    obs = libero_obs(pre, batch=1)
    hits, misses = pre.cache_hits, pre.cache_misses
    first = pre(obs, "libero_panda")
    second = pre(obs, "libero_panda")
    np.testing.assert_array_equal(first.input_ids, second.input_ids)
    assert pre.cache_misses - misses <= 1 and pre.cache_hits - hits >= 1
    misses = pre.cache_misses
    obs["language"][LIBERO_LANG] = [["put the bowl in the sink"]]
    changed = pre(obs, "libero_panda")
    assert pre.cache_misses == misses + 1
    assert not np.array_equal(changed.input_ids, first.input_ids)


def test_golden_ids_through_the_preprocessor(eagle_tokenizer, tmp_path):
    """Real tokenizer + one 256x256 camera + 'pick up the apple' -> the 108 golden ids."""
    config = preset_config("full")
    write_processor_files(tmp_path, config, seed=0)
    save_tokenizer(eagle_tokenizer, tmp_path)
    pre = Preprocessor.from_dir(tmp_path, max_state_dim=128, image_token_index=151669, pixels_per_token=784)
    spec = pre.spec.embodiment("new_embodiment")
    obs = {
        "video": {"front": np.zeros((1, 1, 256, 256, 3), np.uint8)},
        "state": random_state(spec, 1, np.random.default_rng(3)),
        "language": {"task": [["Pick up the apple."]]},
    }
    inputs = pre(obs, "new_embodiment")
    assert inputs.input_ids[0].tolist() == GOLDEN_108
    assert inputs.attention_mask.all() and inputs.image_mask.sum() == 81
    assert inputs.state.shape == (1, 1, 128)


def test_construction_checks(synthetic_dir, tiny_config, eagle_dir):
    kwargs = dict(image_token_index=tiny_config.backbone.image_token_index, pixels_per_token=784)
    with pytest.raises(CheckpointError, match=r"processor max_state_dim 16 differs from the model's max_state_dim 128"):
        Preprocessor.from_dir(synthetic_dir, max_state_dim=128, **kwargs)
    with pytest.raises(TokenizerError, match=r"image tokens map to"):
        Preprocessor.from_dir(synthetic_dir, max_state_dim=16, image_token_index=151669, pixels_per_token=784)
    with pytest.raises(CheckpointError, match=r"pixels_per_token 700"):
        Preprocessor.from_dir(synthetic_dir, max_state_dim=16, image_token_index=kwargs["image_token_index"], pixels_per_token=700)


# ------------------------------------------------------------------------------------------ bad input
BAD_INPUTS = [
    ("missing video key", lambda o: o["video"].pop("wrist_image"),
     r"observation\['video'\]: missing \['wrist_image'\] — expected exactly \['image', 'wrist_image'\]"),
    ("extra video key", lambda o: o["video"].update(extra=o["video"]["image"]),
     r"observation\['video'\]: unexpected \['extra'\]"),
    ("extra top-level key", lambda o: o.update(action={}), r"observation: unexpected \['action'\]"),
    ("missing state key", lambda o: o["state"].pop("gripper"), r"observation\['state'\]: missing \['gripper'\]"),
    ("missing language", lambda o: o.pop("language"), r"observation: missing \['language'\]"),
    ("wrong language key", lambda o: o.update(language={"task": [["x"], ["y"]]}),
     r"observation\['language'\]: missing \['annotation.human.action.task_description'\] and unexpected \['task'\]"),
    ("float image", lambda o: o["video"].update(image=o["video"]["image"].astype(np.float32)),
     r"video\['image'\] must be uint8 \(RGB 0..255\), got float32"),
    ("image rank", lambda o: o["video"].update(image=o["video"]["image"][:, 0]),
     r"video\['image'\] must have rank 5 \[B, T, H, W, 3\], got shape \[2, 480, 640, 3\]"),
    ("channels", lambda o: o["video"].update(image=np.zeros((2, 1, 480, 640, 4), np.uint8)),
     r"video\['image'\] must have 3 channels \(RGB\) in the last axis, got shape \[2, 1, 480, 640, 4\]"),
    ("channels first", lambda o: o["video"].update(image=np.zeros((2, 1, 3, 480, 640), np.uint8)),
     r"video\['image'\] must have 3 channels"),
    ("frames", lambda o: o["video"].update(image=np.zeros((2, 2, 480, 640, 3), np.uint8)),
     r"video\['image'\] must hold T=1 frames in axis 1"),
    ("not an array", lambda o: o["video"].update(image=[[0]]), r"video\['image'\] must be a numpy array"),
    ("video batch mismatch", lambda o: o["video"].update(wrist_image=o["video"]["wrist_image"][:1]),
     r"batch mismatch: video\['wrist_image'\] has batch 1, other inputs have 2"),
    ("state batch mismatch", lambda o: o["state"].update(gripper=o["state"]["gripper"][:1]),
     r"batch mismatch: state\['gripper'\] has batch 1, video has 2"),
    ("language batch mismatch", lambda o: o["language"].update({LIBERO_LANG: [["x"]]}),
     r"batch mismatch: language 'annotation.human.action.task_description' has 1 entries, video has 2"),
    ("NaN state", lambda o: o["state"]["gripper"].__setitem__((0, 0, 0), np.nan), r"state\['gripper'\] contains NaN or inf"),
    ("inf state", lambda o: o["state"]["eef_pose"].__setitem__((1, 0, 2), np.inf), r"state\['eef_pose'\] contains NaN or inf"),
    ("state width", lambda o: o["state"].update(gripper=np.zeros((2, 1, 3), np.float32)),
     r"state\['gripper'\] has width 3, expected 2 \(from statistics.json\)"),
    ("state rank", lambda o: o["state"].update(gripper=np.zeros((2, 2), np.float32)),
     r"state\['gripper'\] must have rank 3 \[B, T, D\], got shape \[2, 2\]"),
    ("state dtype", lambda o: o["state"].update(gripper=np.zeros((2, 1, 2), np.int64)), r"state\['gripper'\] must be float32, got int64"),
    ("language type", lambda o: o["language"].update({LIBERO_LANG: "pick"}),
     r"language\['annotation.human.action.task_description'\] must be a list of B lists of one string, got str"),
    ("language item", lambda o: o["language"].update({LIBERO_LANG: [["a", "b"], ["c"]]}),
     r"items must be \[str\] \(one instruction per sample\)"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "edit", "match"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_nested_input(pre, what, edit, match):
    obs = libero_obs(pre)
    edit(obs)
    with pytest.raises(ObservationError, match=match):
        pre(obs, "libero_panda")


FLAT_BAD = [
    ("missing", lambda o: o.pop("video.image"), r"observation video keys \('video.<view>'\): missing \['image'\]"),
    ("extra", lambda o: o.update({"state.extra": np.zeros((2, 1, 1), np.float32)}), r"observation: unexpected \['state.extra'\]"),
    ("language", lambda o: o.update({LIBERO_LANG: [1, 2]}), r"'annotation.human.action.task_description' must be a list or tuple of B strings"),
    ("float image", lambda o: o.update({"video.image": o["video.image"].astype(np.float64)}), r"'video.image' must be uint8"),
    ("state NaN", lambda o: o["state.gripper"].__setitem__((0, 0, 0), np.nan), r"'state.gripper' contains NaN or inf"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "edit", "match"), FLAT_BAD, ids=[b[0] for b in FLAT_BAD])
def test_bad_flat_input(pre, what, edit, match):
    obs = flat(libero_obs(pre))
    edit(obs)
    with pytest.raises(ObservationError, match=match):
        pre(obs, "libero_panda")


def test_unknown_embodiment(pre):
    with pytest.raises(EmbodimentError, match=r"unknown embodiment 'gr1' — expected one of: libero_panda, new_embodiment, unitree_g1"):
        pre(libero_obs(pre), "gr1")
    with pytest.raises(EmbodimentError, match=r"unknown embodiment 'gr1'"):
        pre.image_sizes(libero_obs(pre), "gr1")


def test_not_a_dict(pre):
    with pytest.raises(ObservationError, match=r"observation must be a dict, got list"):
        pre([], "libero_panda")


def test_decode_checks_batch(pre):
    inputs = pre(libero_obs(pre), "libero_panda")
    with pytest.raises(ObservationError, match=r"action_pred must be \[B=2, H, D\], got \[1, 16, 16\]"):
        pre.decode(np.zeros((1, 16, 16), np.float32), inputs)


def test_image_sizes_is_cheap_and_matches_the_table(pre):
    obs = libero_obs(pre, batch=3, sizes=((720, 1280), (240, 320)))
    assert pre.image_sizes(obs, "libero_panda") == [processed_image_size(720, 1280), processed_image_size(240, 320)] * 3


def test_reset_clears_the_prompt_cache(pre):
    obs = libero_obs(pre, batch=1)
    pre(obs, "libero_panda")
    pre.reset()
    misses = pre.cache_misses
    pre(obs, "libero_panda")
    assert pre.cache_misses == misses + 1


# ------------------------------------------------------------------------------------------ issue 7, item 2
@pytest.mark.parametrize("rot6d", [np.zeros(6), np.array([1.0, 0, 0, 2.0, 0, 0])], ids=["all-zero", "parallel-rows"])
def test_degenerate_reference_rotation_is_an_observation_error(pre, rot6d):
    obs = libero_obs(pre, batch=2)
    obs["state"]["eef_pose"][1, 0, 3:9] = rot6d  # sample 1's relative-EEF reference frame
    with pytest.raises(ObservationError, match=r"state\['eef_pose'\] holds a degenerate rotation at \[batch, step\] \[1, 0\]"):
        pre(obs, "libero_panda")
    with pytest.raises(ObservationError, match=r"'state\.eef_pose' holds a degenerate rotation"):
        pre(flat(obs), "libero_panda")


def test_non_finite_model_output_is_never_decoded(pre):
    from gr00t_trt.base.errors import NonFiniteActionError

    inputs = pre(libero_obs(pre, batch=1), "libero_panda")
    action_pred = np.zeros((1, 16, 16), np.float32)
    action_pred[0, 3, 2] = np.nan
    with pytest.raises(NonFiniteActionError, match=r"the model produced 1 non-finite values \(NaN/inf\) in its normalised"):
        pre.decode(action_pred, inputs)
    action_pred[0, 3, 2] = 0.0
    action_pred[0, 15, 15] = np.inf  # in the padding beyond libero_panda's width: never used, never refused
    assert all(np.isfinite(v).all() for v in pre.decode(action_pred, inputs).values())


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")
def test_non_finite_physical_actions_are_refused(pre):
    from gr00t_trt.base.errors import NonFiniteActionError
    from gr00t_trt.processing.actions import decode_actions

    spec = pre.spec.embodiment("libero_panda")
    inputs = pre(libero_obs(pre, batch=1), "libero_panda")
    state = dict(inputs.raw_state)
    state["eef_pose"] = np.full(state["eef_pose"].shape, 1e300)  # finite float64, but the pose overflows float32
    with pytest.raises(NonFiniteActionError, match=r"decoding action 'eef_pose' of 'libero_panda' gave \d+ non-finite"):
        decode_actions(np.zeros((1, 16, 16), np.float32), spec, state)


# ------------------------------------------------------------------------------------------ issue 7, item 9
def _fresh(pre, **kwargs) -> Preprocessor:
    return Preprocessor(pre.spec, pre.tokenizer, max_state_dim=pre.spec.settings.max_state_dim,
                        image_token_index=pre.image_token_index, pixels_per_token=pre.pixels_per_token, **kwargs)


def test_rejected_prompts_are_not_cached(pre):
    fresh = _fresh(pre, max_prompt_tokens=400)
    sizes = ((252, 336),)
    accepted = fresh.prompt_ids("pick up the apple", sizes)
    assert len(accepted) <= 400 and fresh.cache_bytes_used > 0
    used = fresh.cache_bytes_used
    for k in range(3):
        with pytest.raises(ObservationError, match=r"the prompt of this instruction is \d+ tokens .* more than the 400") as info:
            fresh.prompt_ids(f"word{k} " * 1000, sizes)
        assert "--max-seq-len" not in str(info.value)  # export has no such option
    assert fresh.cache_bytes_used == used and len(fresh._cache) == 1


def test_prompt_cache_is_bounded_in_bytes(pre):
    fresh = _fresh(pre, cache_bytes=200_000)
    sizes = ((252, 336),)
    for k in range(40):
        fresh.prompt_ids(f"instruction {k} " + "go " * 3000, sizes)  # ~9 kB of text + ids each
        assert fresh.cache_bytes_used <= 200_000
    assert 0 < len(fresh._cache) < 40
    hits = fresh.cache_hits
    fresh.prompt_ids("instruction 39 " + "go " * 3000, sizes)  # the most recent entry survived eviction
    assert fresh.cache_hits == hits + 1


# ------------------------------------------------------------------------------------------ issue 17, item 3
def _refuse(what: str):
    def refuse(*args, **kwargs):
        raise AssertionError(f"{what} before the limits were checked")
    return refuse


def test_a_batch_over_the_export_limit_is_refused_before_any_image_is_resized(pre, monkeypatch):
    fresh = _fresh(pre, max_batch=2)
    monkeypatch.setattr(fresh, "image_transform", _refuse("an image was resized"))
    with pytest.raises(ObservationError, match=r"batch size B is 3, the export supports 1..2 — .*--max-batch"):
        fresh(libero_obs(pre, batch=3, sizes=((8, 8), (8, 8))), "libero_panda")


class _NoList(np.ndarray):
    def tolist(self):
        raise AssertionError("the language array was converted before it was counted")


def test_a_language_array_is_counted_before_it_is_converted(pre):
    obs = flat(libero_obs(pre, batch=2, sizes=((8, 8), (8, 8))))
    obs[LIBERO_LANG] = np.array(["go"] * 5).view(_NoList)
    with pytest.raises(ObservationError, match=r"language .* has 5 entries, video has 2"):
        pre(obs, "libero_panda")


def test_an_instruction_too_long_for_any_tokenisation_is_refused_before_tokenising(pre, monkeypatch):
    from gr00t_trt.processing.tokenizer import EagleTokenizer

    fresh = _fresh(pre, max_prompt_tokens=64)
    monkeypatch.setattr(EagleTokenizer, "encode", _refuse("the instruction was tokenised"))
    with pytest.raises(ObservationError, match=r"the instruction is 1,000,000 bytes, more than the 64 tokens"):
        fresh.prompt_ids("a" * 1_000_000, ((252, 336),))


# ------------------------------------------------------------------------------------------ issue 17, item 15
def test_state_is_cast_to_float32_before_the_finite_check(pre):
    obs = flat(libero_obs(pre, batch=1, sizes=((8, 8), (8, 8))))
    key = next(k for k in obs if k.startswith("state."))
    obs[key] = np.full(obs[key].shape, 1e300, np.float64)  # finite in float64, inf in float32
    with pytest.raises(ObservationError, match=rf"'{key}' contains NaN or inf \(as float32\)"):
        pre(obs, "libero_panda")


def test_a_state_far_beyond_the_statistics_is_warned_about(pre):
    obs = flat(libero_obs(pre, batch=1, sizes=((8, 8), (8, 8))))
    key = next(k for k in obs if k.startswith("state.") and "eef" not in k)  # no rotation in it
    obs[key] = obs[key].astype(">f4")  # big-endian state is accepted
    pre(obs, "libero_panda")
    obs[key] = obs[key].astype(np.float32)
    obs[key][..., 0] = 1e30
    with pytest.warns(RuntimeWarning, match=rf"'{key}' holds 1e\+30, over 100× the statistics' range"):
        pre(obs, "libero_panda")
