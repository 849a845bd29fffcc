"""Policy: load, get_action end to end with the real Preprocessor (synthetic tiny processor files and
tokenizer) over a fake export sized to the tiny preset, embodiment and noise handling, backend choice."""

from __future__ import annotations

import numpy as np
import pytest
from runtime_fakes import FakeSpec, write_fake_export

from gr00t_trt.base.errors import BackendError, EmbodimentError, ObservationError
from gr00t_trt.contract.manifest import load_manifest
from gr00t_trt.runtime import OrtBackend, Policy
from gr00t_trt.runtime.registry import make_backend

SIZE = (252, 336)  # what the tiny processor makes of a 120x160 camera image
TOKENS = 108  # (252 / 28) * (336 / 28)


@pytest.fixture(scope="module")
def policy_export(tmp_path_factory):
    return make_policy_export(tmp_path_factory.mktemp("policy") / "export")


def make_policy_export(folder, step_weight: bool = True):
    """A fake export sized to the tiny preset with the synthetic processor files; ``step_weight=False``:
    as exported before prefix conditioning."""
    from gr00t_trt.families.n16.presets import preset_config
    from gr00t_trt.families.n16.synthetic_processor import write_processor_files, write_synthetic_tokenizer
    from gr00t_trt.processing.tokenizer import load_tokenizer

    config = preset_config("tiny")
    folder.mkdir()
    write_processor_files(folder, config, seed=0)
    write_synthetic_tokenizer(folder, config)
    patch = config.backbone.vision.patch_size * config.backbone.unshuffle_factor
    rows, cols = SIZE[0] // patch, SIZE[1] // patch
    fake = FakeSpec(
        dims={"E": 8, "H": config.action_horizon, "Ds": config.max_state_dim, "Da": config.max_action_dim,
              "C": 6, "L": 2, "Hc": 2, "Dh": 3, "O": 7, "R": patch, "U": 1, "Dv": 4},
        dynamic={"B": [1, 1, 2], "S": [1, 160, 320], "T": [1, TOKENS, 2 * TOKENS], "n": [1, 1, 2],
                 "r": [rows] * 3, "c": [cols] * 3},  # serves SIZE only
        vocab=config.backbone.text.vocab_size, img=config.backbone.image_token_index,
        pad=load_tokenizer(folder).pad_token_id, sizes={SIZE: TOKENS},
        embodiments={"unitree_g1": (8, 0), "new_embodiment": (10, 1)},  # sliced: slots differ from ids
        step_weight=step_weight,
    )
    return write_fake_export(folder, fake=fake, pixels_per_token=patch * patch)


def observation(seed: int = 0, size=(120, 160)) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "video": {"front": rng.integers(0, 256, (1, 1, *size, 3), dtype=np.uint8)},
        "state": {"eef": rng.uniform(-0.3, 0.3, (1, 1, 6)).astype(np.float32),
                  "gripper": rng.uniform(0, 1, (1, 1, 1)).astype(np.float32)},
        "language": {"task": [["pick up the apple"]]},
    }


@pytest.fixture(scope="module")
def policy(policy_export, new_backend):
    with Policy.load(policy_export.folder, backend=new_backend(policy_export.folder)) as p:
        yield p


def test_get_action_end_to_end(policy, policy_export):
    obs = observation()
    actions = policy.predict(obs, embodiment="new_embodiment", seed=0)
    assert {k: v.shape for k, v in actions.items()} == {"eef": (1, 8, 6), "gripper": (1, 8, 1)}
    inputs = policy.preprocessor(obs, "new_embodiment")
    noise = np.random.default_rng(0).standard_normal((1, 16, 16), dtype=np.float32)
    expected = policy.preprocessor.decode(policy_export.reference(inputs, noise)["action_pred"], inputs)
    for key, value in expected.items():
        np.testing.assert_allclose(actions[key], value, rtol=1e-4, atol=1e-5)
    again = policy.predict(obs, embodiment="new_embodiment", noise=noise)
    for key in actions:
        np.testing.assert_array_equal(again[key], actions[key])  # same noise, same answer (and fresh arrays)
    assert policy.preprocessor.cache_hits >= 1  # the instruction's ids were reused


def test_timings_and_metadata(policy):
    policy.predict(observation(), embodiment="new_embodiment")
    timings = policy.last_timings
    assert list(timings) == ["preprocess", "vision", "backbone", "dit_context", "action_head", "pipeline", "decode",
                             "total"]
    assert all(v >= 0 for v in timings.values()) and timings["total"] >= timings["pipeline"]
    meta = policy.metadata
    assert meta["embodiments"] == ["new_embodiment", "unitree_g1"]
    assert meta["image_sizes"] == [list(SIZE)] and meta["backend"] == policy.pipeline.backend.name
    # per embodiment, what get_action really answers: its horizon and its action keys with their widths
    actions = policy.predict(observation(), embodiment="new_embodiment", seed=0)
    answer = meta["per_embodiment"]["new_embodiment"]
    assert {k: list(v.shape[1:]) for k, v in actions.items()} == {
        k: [answer["action_horizon"], width] for k, width in answer["actions"].items()}
    assert set(meta["per_embodiment"]) == set(meta["embodiments"]) and meta["model_action_horizon"] == 16
    policy.reset()
    assert policy.last_timings == {}


def test_a_closed_policy_says_what_a_policy_user_does(policy_export, new_backend):
    with Policy.load(policy_export.folder, backend=new_backend(policy_export.folder)) as closed:
        closed.predict(observation(), embodiment="new_embodiment", seed=0)
    with pytest.raises(BackendError, match=r"this Policy .* was closed .* load it again with Policy.load\(folder\)") as caught:
        closed.predict(observation(), embodiment="new_embodiment", seed=0)
    assert "activate()" not in str(caught.value)  # a backend's verb, not a Policy's


def test_detailed_timings_split_the_action_head_per_denoising_step(policy_export, new_backend):
    with Policy.load(policy_export.folder, backend=new_backend(policy_export.folder), detailed_timings=True) as detailed:
        detailed.predict(observation(), embodiment="new_embodiment", seed=0)
        steps = detailed.manifest.steps
        assert list(detailed.last_timings) == ["preprocess", "vision", "backbone", "dit_context", "state_encoder",
                                               *(f"denoise_{k}" for k in range(steps)), "pipeline", "decode", "total"]


def test_one_policy_is_safe_from_several_threads(policy):
    """Concurrent calls on one Policy share its buffers: each must still get its own, correct answer."""
    from concurrent.futures import ThreadPoolExecutor

    obs = observation()
    expected = {seed: policy.predict(obs, embodiment="new_embodiment", seed=seed) for seed in range(4)}
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda s: (s, policy.predict(obs, embodiment="new_embodiment", seed=s)),
                                [0, 1, 2, 3] * 10))
    for seed, actions in results:
        for key, value in expected[seed].items():
            np.testing.assert_array_equal(actions[key], value)


@pytest.mark.parametrize("seed", [-1, "abc", 1.5, True])
def test_bad_seed_is_one_line(policy, seed):
    with pytest.raises(ObservationError, match=r"seed must be a non-negative integer or None, got"):
        policy.predict(observation(), embodiment="new_embodiment", seed=seed)


def test_embodiment_must_be_a_tag(policy):
    with pytest.raises(EmbodimentError, match=r"embodiment must be a tag \(str\).*got list"):
        policy.predict(observation(), embodiment=["x"])


def test_embodiment_is_required_when_several_are_exported(policy):
    with pytest.raises(EmbodimentError, match=r"this export has 2 embodiments — choose one \(embodiment= / --embodiment\) of: "
                                              "new_embodiment, unitree_g1"):
        policy.predict(observation())
    with pytest.raises(EmbodimentError, match="embodiment 'libero_panda' was not exported"):
        policy.predict(observation(), embodiment="libero_panda")


def test_bad_noise_is_one_line(policy):
    with pytest.raises(ObservationError, match=r"noise must be float32 \[1, 16, 16\], got float32 \[1, 16, 8\]"):
        policy.predict(observation(), embodiment="new_embodiment", noise=np.zeros((1, 16, 8), np.float32))


def test_image_size_outside_the_served_range(policy):
    with pytest.raises(ObservationError, match=r"image 0 is 252x252 but the export serves HxW images with H and W "
                                                r"multiples of 28, H in 252..252, W in 336..336 — "
                                                r"re-export with --image-size 252x252"):
        policy.predict(observation(size=(160, 160)), embodiment="new_embodiment")


def test_backend_choice(policy_export, tmp_path):
    import shutil

    folder = shutil.copytree(policy_export.folder, tmp_path / "export", ignore=shutil.ignore_patterns("engines"))
    manifest = load_manifest(folder)
    auto = make_backend("auto", folder, manifest, threads=1)  # no usable TensorRT here: ONNX Runtime
    assert isinstance(auto, OrtBackend) and auto.threads == 1
    with pytest.raises(BackendError, match="unknown backend 'tensorrt' — expected one of: auto, "):
        make_backend("tensorrt", folder, manifest)
    with pytest.raises(BackendError, match="the ort backend has no option engine_dir — it takes: device, device_id, profile_dir, shared_threads, threads"):
        make_backend("ort", folder, manifest, engine_dir="x")
    with pytest.raises(BackendError, match="the trt backend (is not part of this version|cannot run)"):
        make_backend("trt", folder, manifest)


def test_auto_asks_each_backend_whether_it_can_run_the_export(policy_export, monkeypatch):
    from gr00t_trt.runtime import registry

    asked = []

    class Refusing(OrtBackend):
        @classmethod
        def probe(cls, folder, manifest, **options):
            asked.append(folder)
            return "no engines for this GPU"

    monkeypatch.setitem(registry._REGISTRY, "trt", f"{__name__}:_Refusing")
    monkeypatch.setattr(f"{__name__}._Refusing", Refusing, raising=False)
    chosen = make_backend("auto", policy_export.folder, load_manifest(policy_export.folder))
    assert asked == [policy_export.folder] and type(chosen) is OrtBackend
    monkeypatch.setattr(OrtBackend, "probe", classmethod(lambda cls, folder, manifest, **o: "onnxruntime missing"))
    with pytest.raises(BackendError, match=r"no backend can run .* trt: no engines for this GPU; ort: onnxruntime missing"):
        make_backend("auto", policy_export.folder, load_manifest(policy_export.folder))


# ------------------------------------------------------------------------------------------ one API (issue 21)
def test_get_action_answers_action_and_info_like_the_client(policy, policy_export):
    """Isaac-GR00T's (action, info): the action is predict()'s for the same seed, bit for bit, whether the
    options come as a dict (as a server request's) or as keywords; info carries this call's timings and the
    export's identity."""
    obs = observation(1)
    want = policy.predict(obs, embodiment="new_embodiment", seed=3)
    for action, info in (policy.get_action(obs, {"embodiment": "new_embodiment", "seed": 3, "temperature": 1}),
                         policy.get_action(obs, embodiment="new_embodiment", seed=3)):
        assert set(action) == set(want)
        for key in want:
            np.testing.assert_array_equal(action[key], want[key])
        assert info["embodiment"] == "new_embodiment" and info["seed"] == 3 and info["noise"] == "seeded"
        assert info["backend"] == policy.pipeline.backend.name
        assert info["export"]["fingerprint"] == policy.manifest.source.get("fingerprint")
        assert info["export"]["format"] == policy.manifest.format
        assert list(info["timings_ms"])[-1] == "total" and info["timings_ms"]["total"] > 0
    assert policy.get_action(obs, {"embodiment": "new_embodiment", "temperature": 1})[1]["ignored_options"] == ["temperature"]
    with pytest.raises(ObservationError, match="options must be a dict"):
        policy.get_action(obs, ["new_embodiment"])


def test_validate_checks_without_running_the_graphs(policy, monkeypatch):
    def no_graphs(*args, **kwargs):
        raise AssertionError("validate ran the graphs")

    monkeypatch.setattr(policy.pipeline, "run", no_graphs)
    assert policy.validate(observation(), "new_embodiment") == "new_embodiment"
    bad = observation()
    bad["state"]["eef"] = bad["state"]["eef"][..., :5]
    with pytest.raises(ObservationError, match="eef.*width 5, expected 6"):
        policy.validate(bad, "new_embodiment")
    with pytest.raises(ObservationError, match="image"):  # a camera size the export has no graphs for
        policy.validate(observation(size=(160, 160)), "new_embodiment")


def test_modality_config_in_isaac_gr00t_format(policy):
    from gr00t_trt.serve.wire import ModalityConfig

    config = policy.modality_config("new_embodiment")
    assert set(config) == {"video", "state", "action", "language"}
    assert all(isinstance(c, ModalityConfig) for c in config.values())
    spec = policy.preprocessor.spec.embodiment("new_embodiment")
    assert config["state"].modality_keys == list(spec.state_keys)
    assert config["action"].horizon == spec.action_horizon
    assert policy.get_modality_config("new_embodiment") == config
    assert policy.reset() == {}
