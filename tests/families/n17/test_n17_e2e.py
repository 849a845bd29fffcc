"""N1.7 end to end on the tiny preset: make-checkpoint --model n1.7 → export → verify at fp32, the runtime
on a two-frames-per-view embodiment, and inspect — through the same commands as N1.6."""

from __future__ import annotations

import numpy as np
import pytest

from gr00t_trt.contract.manifest import load_manifest
from gr00t_trt.export.driver import ExportOptions, export_checkpoint
from gr00t_trt.families.registry import N17, family_of_checkpoint
from gr00t_trt.processing.observations import synthetic_observation
from gr00t_trt.runtime.policy import Policy
from gr00t_trt.verification.verify import verify_export

DROID = "oxe_droid_relative_eef_relative_joint"


@pytest.fixture(scope="module")
def n17_tiny(n17_checkpoint, n17_export):
    """The session's tiny checkpoint and its fp32 export (every embodiment, 256x352, batch 1..2):
    tests/families/n17/conftest.py."""
    return n17_checkpoint, n17_export


def test_the_export_records_its_family_and_n17_graphs(n17_tiny):
    checkpoint, export_dir = n17_tiny
    assert family_of_checkpoint(checkpoint) is N17
    manifest = load_manifest(export_dir)
    assert manifest.family == "n1.7" and manifest.contract is N17.runtime().CONTRACT
    vision = manifest.graph("vision")
    assert [t.name for t in vision.outputs] == ["image_embeds", "deepstack_0", "deepstack_1", "deepstack_2"]
    assert "original_mask" in [t.name for t in manifest.graph("dit_context").inputs]
    assert manifest.pixels_per_token == 32 * 32 and manifest.dims["H"] == 16 and manifest.vision["rope_theta"] > 0


def test_verify_passes_at_fp32_on_every_level(n17_tiny):
    checkpoint, export_dir = n17_tiny
    report = verify_export(export_dir, checkpoint, backend="ort", seeds=2)
    assert report.passed, report.failures
    stages = {c.stage.split(": ")[0].split(" ", 1)[1] for c in report.comparisons}
    assert {"backbone alone", "action head on reference backbone", "end-to-end", "lock-step 0"} <= stages
    assert any("deepstack_2" in c.stage for c in report.comparisons)  # every vision output checked alone
    assert max(c.rel_l2 for c in report.comparisons) <= 1e-4


def test_two_frames_per_view_run_and_give_each_key_its_horizon(n17_tiny):
    _, export_dir = n17_tiny
    with Policy.load(export_dir, backend="ort") as policy:
        obs = synthetic_observation(policy.preprocessor, DROID, seed=3, batch=2)
        assert next(iter(obs["video"].values())).shape[1] == 2  # DROID sends two frames per view
        first = policy.predict(obs, embodiment=DROID, seed=0)
        again = policy.predict(obs, embodiment=DROID, seed=0)
        other = policy.predict(obs, embodiment=DROID, seed=1)
        spec = policy.preprocessor.spec.embodiment(DROID)
    for key, width in spec.action_dims.items():
        assert first[key].shape == (2, spec.action_horizon, width) and np.isfinite(first[key]).all()
        np.testing.assert_array_equal(first[key], again[key])
    assert any(not np.array_equal(first[k], other[k]) for k in first)  # the noise reaches the actions


def test_prefix_conditioning_continues_an_n17_chunk(n17_tiny):
    """Issue 21 on N1.7 (its action unit reuses N1.6's decoder with the step weights): the frozen rows of a
    continued chunk equal the given prefix in physical units, the ramp rows move off it, and a plain call
    afterwards is unchanged. libero_sim's keys are absolute and joint-relative ones; DROID's relative rot6d
    pose is left out: random weights give non-orthonormal rot6d whose canonical re-encoding is clipped."""
    _, export_dir = n17_tiny
    with Policy.load(export_dir, backend="ort") as policy:
        obs = synthetic_observation(policy.preprocessor, "libero_sim", seed=0)
        options = {"embodiment": "libero_sim", "seed": 0}
        first, _ = policy.get_action(obs, options)
        prefix = {key: value[:, :6] for key, value in first.items()}
        got, info = policy.get_action(obs, {**options, "seed": 1, "prefix": prefix, "rtc_frozen_steps": 3})
        again, _ = policy.get_action(obs, options)
    assert info["prefix"] == {"overlap": 6, "frozen": 3, "ramp_rate": 5.0}
    for key in got:
        np.testing.assert_allclose(got[key][:, :3], prefix[key][:, :3], atol=1e-5, err_msg=key)
        np.testing.assert_array_equal(again[key], first[key], err_msg=key)
    assert max(np.abs(got[key][:, 3:6] - prefix[key][:, 3:6]).max() for key in got) > 1e-3


def test_inspect_counts_the_full_n17_layout_from_headers(tmp_path):
    from gr00t_trt.families.n17.synthetic import make_header_only_checkpoint
    from gr00t_trt.model.inspect import inspect_checkpoint

    report = inspect_checkpoint(make_header_only_checkpoint(tmp_path / "full"))
    assert report.layout.ok and report.layout.skipped == ["backbone.model.lm_head.weight"]
    assert report.num_tensors == 1031 and report.weight_bytes == 6_910_361_856
    counts = {c.name: c.params for c in report.components}
    assert counts == {  # spec §2.4
        "vision": 406_957_056, "llm": 1_116_542_976, "lm_head": 311_164_928, "vlln": 4_096,
        "vl_self_attention": 201_433_088, "state_encoder": 54_738_944, "action_encoder": 233_127_936,
        "action_decoder": 37_916_800, "position_embedding": 1_572_864, "dit": 1_091_722_240}
    assert (report.total_params_without_lm_head, report.total_params) == (3_144_016_000, 3_455_180_928)
    assert report.configured_embodiments[-1] == DROID


def test_a_graph_without_a_plan_is_refused_before_any_work(n17_tiny, tmp_path, monkeypatch):
    """A family that plans no int8 for a graph (N1.7 before its int8 plan) is refused up front, by name."""
    from gr00t_trt.base.errors import ExportError

    checkpoint, _ = n17_tiny
    face = N17.export()
    monkeypatch.setattr(face, "INT8_PLAN", {k: v for k, v in face.INT8_PLAN.items() if k != "backbone"})
    with pytest.raises(ExportError, match="GR00T N1.7 has no quantisation plan for backbone at int8"):
        export_checkpoint(checkpoint, tmp_path / "out", ExportOptions(precision="int8"))
    assert not list(tmp_path.iterdir())  # refused before the staging folder


def test_bench_model_only_prints_the_n17_roofline_and_its_bytes_match_the_graphs(n17_tiny, tmp_path):
    import json

    from typer.testing import CliRunner

    from gr00t_trt.bench.model_only import roofline_from_export
    from gr00t_trt.cli import app
    from gr00t_trt.contract.export_sizes import stored_weight_bytes

    _, export_dir = n17_tiny
    result = CliRunner().invoke(app, ["bench", str(export_dir), "--model-only", "--json", str(tmp_path / "r.json"),
                                      "--device", "thor"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "DiT weights per denoising step" in result.output
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["floors_ms"]["thor"]["ours"]["total"]["ms"] > 0

    roof = roofline_from_export(export_dir, cameras=1)
    manifest = load_manifest(export_dir)
    stored = stored_weight_bytes(export_dir, manifest.graphs)
    c, steps, (h, w, _) = roof.config, manifest.steps, roof.workload.images[0]
    read = {kind: sum(it.weight_bytes("fp32") for it in roof.items["ours"] if it.graph == kind)
            for kind in ("vision", "backbone", "dit_context", "dit")}
    # what a step reads, less what the graph gets as inputs or gathers, plus what it stores but does not read:
    # the vision graph's position table arrives resized per size; the backbone gathers S embedding rows of
    # the stored table; the DiT stores every step's modulation rows
    v, e = c.backbone.vision, c.backbone.text.hidden_size
    patches = (h // v.patch_size) * (w // v.patch_size)
    expected = {
        "vision": read["vision"] - 4 * patches * v.hidden_size,
        "backbone": read["backbone"] + 4 * (c.backbone.text.vocab_size - roof.workload.padded_seq_len) * e,
        "dit_context": read["dit_context"],
        "dit": read["dit"] + 4 * (steps - 1) * (c.dit.num_layers * 2 + 2) * c.input_embedding_dim,
    }
    for kind, want in expected.items():
        (name,) = [g.name for g in manifest.graphs_of_kind(kind)]
        assert want <= stored[name] <= 1.01 * want, (kind, want, stored[name])
