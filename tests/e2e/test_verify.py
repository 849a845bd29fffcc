"""`verify` end to end: fp32 and fp16 exports against the unoptimised PyTorch reference."""

from __future__ import annotations

import numpy as np
import pytest

from gr00t_trt.base.errors import VerificationError
from gr00t_trt.export.driver import ExportOptions, export_checkpoint
from gr00t_trt.families.n16.processing.modality import load_processor_spec
from gr00t_trt.families.n16.synthetic import make_checkpoint
from gr00t_trt.processing.images import processed_image_size
from gr00t_trt.processing.observations import INSTRUCTIONS, synthetic_observation
from gr00t_trt.runtime.pipeline import Pipeline
from gr00t_trt.verification import verify as verify_module
from gr00t_trt.verification.verify import verify_export

LEVELS = ("alone", "lock-step", "action head on reference backbone", "end-to-end: backbone features",
          "end-to-end: normalised action", "end-to-end: physical")


def _observation_matrix(folder, *, each_once: bool = False):
    """Two embodiments (2 cameras and 1 camera), both image sizes, both instruction lengths, batch 1 and 2:
    every combination, or (``each_once``) three cases that still hold each of them once."""
    spec = load_processor_spec(folder)
    cases = []
    for tag in ("libero_panda", "unitree_g1"):
        for seed, sizes in enumerate((((252, 336), (252, 252)), ((252, 252), (252, 336)))):
            if not each_once or (tag, seed) in (("libero_panda", 0), ("unitree_g1", 1)):
                cases.append((tag, synthetic_observation(spec, tag, seed=seed, image_sizes=sizes,
                                                         instruction=INSTRUCTIONS[seed])))
    cases.append(("libero_panda", synthetic_observation(spec, "libero_panda", seed=3, batch=2)))
    return cases


def _assert_fp32_parity(report):
    assert report.passed, [(c.stage, c.rel_l2) for c in report.failures]
    for level in LEVELS:
        assert any(level in c.stage for c in report.comparisons), level
    assert max(c.rel_l2 for c in report.comparisons) <= 1e-4


def test_tiny_fp32_export_matches_reference_across_cameras_sizes_prompts_and_embodiments(tiny_export, tiny_checkpoint):
    report = verify_export(tiny_export, tiny_checkpoint, backend="ort", observations=_observation_matrix(tiny_checkpoint))
    _assert_fp32_parity(report)
    stages = " ".join(c.stage for c in report.comparisons)
    assert "vision 252x336 alone" in stages and "vision 252x252 alone" in stages


def test_default_export_serves_16_9_portrait_square_and_batch_2_at_fp32_parity(tiny_export, tiny_checkpoint):
    """Issue 18.3: the default export, never re-exported, takes a 720p (16:9) camera, a portrait and a square
    one, a 21:9 one and a batch of 2 — each vision call at its own size through the one vision graph — at
    fp32 parity with the PyTorch reference at every level (graph alone, lock-step, end to end)."""
    spec = load_processor_spec(tiny_checkpoint)
    rng = np.random.default_rng(0)

    def cameras(tag, seed, frames, batch=1):
        """An observation whose cameras send real frames of these sizes (720p, portrait, ...)."""
        obs = synthetic_observation(spec, tag, seed=seed, batch=batch)
        for key, (h, w) in zip(obs["video"], frames, strict=True):
            obs["video"][key] = rng.integers(0, 256, (batch, 1, h, w, 3), dtype=np.uint8)
        return tag, obs

    cases = [cameras("libero_panda", 11, [(720, 1280), (1280, 720)]),  # 16:9 and 9:16 portrait
             cameras("libero_panda", 12, [(256, 256), (720, 1280)], batch=2),  # square + 16:9, batch 2
             cameras("unitree_g1", 13, [(1080, 2520)])]  # 21:9
    assert [processed_image_size(*f) for f in ((720, 1280), (1280, 720), (256, 256), (1080, 2520))] == [
        (252, 448), (448, 252), (252, 252), (252, 588)]
    report = verify_export(tiny_export, tiny_checkpoint, backend="ort", observations=cases)
    _assert_fp32_parity(report)
    stages = " ".join(c.stage for c in report.comparisons)
    for size in ("252x448", "448x252", "252x252", "252x588"):
        assert f"vision {size} alone" in stages, size


def test_random_observation_mode_covers_every_exported_embodiment(tiny_export, tiny_checkpoint, monkeypatch):
    references = {}  # stage -> the reference array verify compared against
    real_compare = verify_module.compare

    def recording_compare(stage, reference, candidate, threshold):
        references[stage] = np.array(reference, copy=True)
        return real_compare(stage, reference, candidate, threshold)

    runs = []  # (state, noise) of every end-to-end run, in case order: tag by tag, seed 0 then seed 1
    real_run = Pipeline.run

    def recording_run(self, inputs, noise, *args, **kwargs):
        runs.append((np.array(inputs.state, copy=True), np.array(noise, copy=True)))
        return real_run(self, inputs, noise, *args, **kwargs)

    monkeypatch.setattr(verify_module, "compare", recording_compare)
    monkeypatch.setattr(Pipeline, "run", recording_run)
    report = verify_export(tiny_export, tiny_checkpoint, backend="ort", seeds=2)
    _assert_fp32_parity(report)
    assert {c.stage.split("/")[0] for c in report.comparisons} == {"libero_panda", "unitree_g1", "new_embodiment"}
    # a second seed is a second case: its own observation (state, not only image sizes) and its own noise
    assert len(runs) == 6
    for (state_0, noise_0), (state_1, noise_1) in zip(runs[0::2], runs[1::2], strict=True):
        assert np.abs(noise_0 - noise_1).max() > 0.1
        assert np.abs(state_0 - state_1).max() > 1e-3
    for tag in ("libero_panda", "unitree_g1", "new_embodiment"):
        first, second = (references[f"{tag}/seed{seed} end-to-end: normalised action"] for seed in (0, 1))
        assert first.shape == second.shape and np.abs(first - second).max() > 0.1, tag


@pytest.fixture(scope="module")
def small_export(tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    checkpoint = make_checkpoint(root / "small", "small", seed=1)
    export_checkpoint(checkpoint, root / "small-export", ExportOptions(max_batch=2))
    return checkpoint, root / "small-export"


@pytest.mark.slow
def test_small_fp32_export_matches_reference(small_export):
    """The small preset's larger widths at fp32 parity; the tiny test above runs every combination of the
    matrix through the same code, here each camera size, embodiment, instruction and batch size once."""
    checkpoint, export = small_export
    cases = _observation_matrix(checkpoint, each_once=True)
    assert len(cases) == 3
    report = verify_export(export, checkpoint, backend="ort", observations=cases)
    _assert_fp32_parity(report)
    stages = " ".join(c.stage for c in report.comparisons)
    assert "vision 252x336 alone" in stages and "vision 252x252 alone" in stages


@pytest.mark.slow
def test_prefix_conditioning_on_the_small_preset(small_export):
    """Issue 21 on a real export: a chunk continued from the previous one keeps its frozen rows equal to the
    given prefix in physical units (encode → frozen denoising → decode), moves the ramp rows off it, and a
    call without a prefix is unchanged by the conditioned call before it."""
    from gr00t_trt.runtime import Policy

    checkpoint, export = small_export
    obs = synthetic_observation(load_processor_spec(checkpoint), "unitree_g1", seed=0)
    with Policy.load(export, backend="ort") as policy:
        options = {"embodiment": "unitree_g1", "seed": 0}
        first, _ = policy.get_action(obs, options)
        # rows 0-5 of a chunk for the same observation stay inside the per-row statistics they seed
        prefix = {key: value[:, :6] for key, value in first.items()}
        got, info = policy.get_action(obs, {**options, "seed": 1, "prefix": prefix, "rtc_frozen_steps": 3})
        again, _ = policy.get_action(obs, options)
    assert info["prefix"]["overlap"] == 6 and info["prefix"]["frozen"] == 3
    for key in got:
        np.testing.assert_allclose(got[key][:, :3], prefix[key][:, :3], atol=1e-4, err_msg=key)
        np.testing.assert_array_equal(again[key], first[key], err_msg=key)
    moved = max(np.abs(got[key][:, 3:6] - prefix[key][:, 3:6]).max() for key in got)
    assert moved > 1e-3, moved


@pytest.mark.slow
def test_fp16_export_meets_fp16_thresholds(tiny_checkpoint, tmp_path):
    export = tmp_path / "fp16"
    manifest = export_checkpoint(tiny_checkpoint, export, ExportOptions(precision="fp16", image_sizes=((252, 252),)))
    assert {g.precision for g in manifest.graphs.values()} == {"fp16"}
    assert manifest.graphs["dit"].outputs[0].dtype == "float16"
    report = verify_export(export, tiny_checkpoint, backend="ort", embodiments=("libero_panda", "unitree_g1"), seeds=2)
    assert report.passed, [(c.stage, c.cosine, c.mean_abs) for c in report.failures]
    # fp16 is judged by cosine / mean abs, and really is less exact than fp32
    assert max(c.rel_l2 for c in report.comparisons) > 1e-4


def test_verify_fails_against_other_weights(tiny_export, tmp_path):
    """The check can fail: same config, different random weights → thresholds are missed."""
    other = make_checkpoint(tmp_path / "other", "tiny", seed=7)
    with pytest.raises(VerificationError, match=r"is not the checkpoint .* was made from .* or --any-checkpoint"):
        verify_export(tiny_export, other, backend="ort", embodiments=("unitree_g1",))
    report = verify_export(tiny_export, other, backend="ort", embodiments=("unitree_g1",), same_checkpoint=False)
    assert not report.passed
    assert any("vision" in c.stage for c in report.failures)


def test_verify_refuses_a_checkpoint_with_another_config(tiny_export, tmp_path):
    small = make_checkpoint(tmp_path / "small", "small", seed=0)
    with pytest.raises(VerificationError, match="different config"):
        verify_export(tiny_export, small, backend="ort", same_checkpoint=False)


def test_noise_seed_changes_actions_and_reference_is_deterministic(tiny_export, tiny_checkpoint):
    first = verify_export(tiny_export, tiny_checkpoint, backend="ort", embodiments=("unitree_g1",))
    again = verify_export(tiny_export, tiny_checkpoint, backend="ort", embodiments=("unitree_g1",))
    assert [c.rel_l2 for c in first.comparisons] == [c.rel_l2 for c in again.comparisons]
    assert np.isfinite([c.max_abs for c in first.comparisons]).all()
