"""Roofline: the hand count of architecture §8 from a header-only full-size checkpoint (no weight is
read), the device table, floors and bounds, and the export path against the ONNX initializers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gr00t_trt.base.errors import CheckpointError, Gr00tTrtError
from gr00t_trt.bench.devices import DEVICES, find_device
from gr00t_trt.bench.model_only import roofline_from_checkpoint, roofline_from_export
from gr00t_trt.bench.roofline import Roofline, check_stored_params
from gr00t_trt.contract.export_sizes import stored_weight_bytes
from gr00t_trt.families.n16.presets import preset_config
from gr00t_trt.families.n16.roofline import default_workload, stored_params
from gr00t_trt.families.registry import FAMILIES, N16, N17

C, E, OUT, FF = 1536, 2048, 1024, 6144


def lin(fan_in: int, fan_out: int) -> int:
    return fan_in * fan_out + fan_out


#: architecture §8 / spec §6, by hand: ours reads to_q, to_out and the feed-forward of 32 blocks, the
#: self blocks' K/V, one step's modulation rows and proj_out_2; the reference reads the whole DiT
OURS_DIT_STEP = 32 * (2 * lin(C, C) + lin(C, FF) + lin(FF, C)) + 16 * 2 * lin(C, C) + (32 * 2 * C + 2 * C) + lin(C, OUT)
REFERENCE_DIT_STEP = 1_091_722_240


@pytest.fixture(scope="module")
def full_roofline(tmp_path_factory):
    import safetensors
    import torch

    from gr00t_trt.families.n16.synthetic import make_header_only_checkpoint

    folder = make_header_only_checkpoint(tmp_path_factory.mktemp("full") / "full", preset_config("full"))

    def forbidden(*args, **kwargs):
        raise AssertionError("the roofline must not read tensor data")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(safetensors, "safe_open", forbidden)
        mp.setattr(torch, "load", forbidden)
        return roofline_from_checkpoint(folder, precision="fp8", image_sizes=[(252, 336)], cameras=2)


def test_hand_count_of_architecture_8(full_roofline):
    r = full_roofline
    assert OURS_DIT_STEP == 832_540_672
    assert r.dit_params_per_step("ours") == OURS_DIT_STEP  # ≈ 0.83 G
    assert r.dit_params_per_step("reference") == REFERENCE_DIT_STEP  # ≈ 1.09 G
    ours = r.totals("ours")
    # §8 counts every GEMM at fp8 (≈ 4.7 GB per control step); the backbone's fp8 plan keeps layer 0 and
    # every o_proj / down_proj at fp16 (fp8_plan.py), one more byte per parameter of those
    layer = 2 * E * E + 2 * E * 1024 + 3 * E * 6144  # q, o: 2048²; k, v: 2048 x 1024; gate, up, down
    kept = layer + 15 * (E * E + 6144 * E)
    assert sum(it.gemm_params for it in r.items["ours"] if it.fp8_kept) == kept
    assert 4.6e9 < ours["weight_bytes"] - kept < 4.8e9
    assert ours["weight_bytes"] == pytest.approx(5.0e9, rel=0.02)
    stages = {s: r.totals("ours", s)["params"] for s in r.stage_keys()}
    assert stages["vision"] == pytest.approx(0.41e9, rel=0.05)
    assert stages["backbone"] == pytest.approx(0.81e9, rel=0.01)
    assert stages["dit_context"] == 2 * 16 * lin(E, C) + 2 * E  # cross K/V once per control step (0.10 G)
    assert all(stages[f"denoise_{k}"] == pytest.approx(0.83e9, rel=0.02) for k in range(4))
    ref = r.totals("reference")
    # the reference re-reads per step what ours reads once (K/V) or not at all (modulation linears)
    saved = 4 * (REFERENCE_DIT_STEP - OURS_DIT_STEP) - stages["dit_context"]
    assert ref["params"] - ours["params"] == pytest.approx(saved, rel=0.02)
    assert ref["flops"] > ours["flops"]
    assert any("checked against 1106 safetensors headers" in n for n in r.notes)


def test_thor_and_5090_floors(full_roofline):
    r = full_roofline
    thor, rtx = r.floors(DEVICES["thor"]), r.floors(DEVICES["rtx5090"])
    bytes_ = r.totals("ours")["weight_bytes"]
    assert thor["total"].memory_ms == pytest.approx(bytes_ / 273e9 * 1e3, rel=1e-9)  # ≈ 17 ms (§8)
    assert 16 < thor["total"].ms < 19 and thor["total"].bound == "memory"
    kept = sum(it.gemm_params for it in r.items["ours"] if it.fp8_kept)  # one more byte each (fp8_plan.py)
    assert rtx["total"].memory_ms == pytest.approx(bytes_ / (DEVICES["rtx5090"].memory_gbs * 1e9) * 1e3, rel=1e-9)
    assert (bytes_ - kept) / (DEVICES["rtx5090"].memory_gbs * 1e9) * 1e3 == pytest.approx(2.6, rel=0.03)  # §8
    for device in DEVICES.values():  # 51 tokens per DiT step: weight streaming bounds it everywhere
        assert r.floors(device)["denoise_0"].bound == "memory"
    floors = r.floors(DEVICES["thor"])
    assert floors["action_head"].ms == pytest.approx(floors["state_encoder"].ms + sum(floors[f"denoise_{k}"].ms for k in range(4)))
    assert r.floors(DEVICES["thor"], "reference")["total"].ms > thor["total"].ms


def test_orin_falls_back_to_fp16(full_roofline):
    orin = DEVICES["orin"]
    assert orin.rate("fp8") == ("fp16", 42.5)
    assert set(full_roofline.fallbacks(orin).values()) == {"fp16"}
    assert full_roofline.fallbacks(DEVICES["h100"]) == {}


def test_json_holds_per_control_step_totals(full_roofline):
    data = json.loads(json.dumps(full_roofline.to_dict(DEVICES.values())))
    for side in ("ours", "reference"):
        step = data["sides"][side]["per_control_step"]
        assert step["weight_bytes"] > 0 and step["flops"] > 0
    assert data["floors_ms"]["thor"]["ours"]["total"]["bound"] == "memory"
    assert data["sides"]["ours"]["dit_params_per_denoising_step"] == OURS_DIT_STEP


def test_stored_params_equal_the_header_counts_of_spec_6():
    counts = stored_params(preset_config("full"))
    assert counts["DiT"] == REFERENCE_DIT_STEP and counts["vision"] == 412_442_352
    assert counts["LLM layers + norm"] == 805_378_048 and counts["action encoder"] == 232_931_328
    bad = dict(counts, DiT=counts["DiT"] - 1)
    with pytest.raises(CheckpointError, match=r"roofline: ckpt does not hold the model its config describes — DiT"):
        check_stored_params(stored_params(preset_config("full")), bad, "ckpt")


def test_precision_scales_bytes_not_flops():
    config = preset_config("small")
    w = default_workload(config, [(252, 336)], cameras=1)
    fp32, fp16 = Roofline.build(config, w, "fp32", N16.roofline()), Roofline.build(config, w, "fp16", N16.roofline())
    assert fp32.totals("ours")["weight_bytes"] == 2 * fp16.totals("ours")["weight_bytes"]
    assert fp32.totals("ours")["flops"] == fp16.totals("ours")["flops"]
    assert w.seq_len == 16 + 10 + 108 + 7 and w.padded_seq_len == 160
    with pytest.raises(Gr00tTrtError, match="unknown precision 'int3'"):
        Roofline.build(config, w, "int3", N16.roofline())


def test_find_device():
    assert find_device("NVIDIA GeForce RTX 5090").key == "rtx5090"
    assert find_device("NVIDIA Jetson AGX Thor Developer Kit").key == "thor"
    assert find_device("CPU AMD EPYC") is None and find_device(None) is None
    for d in DEVICES.values():
        assert d.memory_gbs > 0 and "fp16" in d.tflops and "fp32" in d.tflops


def test_export_roofline_against_onnx_initializers(tiny_export):
    from gr00t_trt.contract.manifest import load_manifest

    manifest = load_manifest(tiny_export, verify_files=False)
    roof = roofline_from_export(tiny_export)
    assert set(roof.precisions.values()) == {"fp32"}
    stored = stored_weight_bytes(tiny_export, manifest.graphs)
    config, steps = roof.config, manifest.steps
    table_row = (config.dit.num_layers * 2 + 2) * config.input_embedding_dim
    for kind, extra_rows in (("dit", (steps - 1) * table_row), ("dit_context", 0)):
        read = sum(it.weight_bytes("fp32") for it in roof.items["ours"] if it.graph == kind)
        # the graph stores what one step reads plus the other steps' table rows (and a few constants)
        assert read + 4 * extra_rows <= stored[kind] <= 1.01 * (read + 4 * extra_rows), kind
    assert any("stored weight bytes per graph" in n for n in roof.notes)


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_every_family_has_a_torch_free_roofline(family):
    code = ("import sys\nfor name in ('torch', 'onnx'):\n    sys.modules[name] = None\n"
            f"from gr00t_trt.families.registry import family_named\nfamily_named({family.name!r}).roofline()\nprint('ok')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_n17_full_size_roofline_from_headers(tmp_path):
    """N1.7 at full size: spec §2.4's counts from the config, proven against the headers; the DiT at the
    same widths as N1.6 reads the same weights per step (§8), the VL self-attention once per step."""
    from gr00t_trt.families.n17.synthetic import make_header_only_checkpoint

    folder = make_header_only_checkpoint(tmp_path / "full")
    r = roofline_from_checkpoint(folder, precision="fp16", image_sizes=[(256, 256)], cameras=2)
    assert r.dit_params_per_step("ours") == OURS_DIT_STEP and r.dit_params_per_step("reference") == REFERENCE_DIT_STEP
    assert r.workload.seq_len == 5 + 10 + 2 * (64 + 2) and r.workload.padded_seq_len == 160
    stages = {s: r.totals("ours", s)["params"] for s in r.stage_keys()}
    vlsa = 4 * (4 * E + 3 * lin(E, E) + lin(E, E) + lin(E, 4 * E) + lin(4 * E, E))  # 4 blocks of 32 x 64 heads
    assert vlsa == 201_433_088  # spec §2.4
    assert stages["dit_context"] == 2 * 16 * lin(E, C) + 2 * E + vlsa
    llm_layers = 16 * (2 * E * E + 2 * E * 1024 + 3 * E * 6144 + 2 * 128 + 2 * E)  # no final norm read
    assert stages["backbone"] == llm_layers + 160 * E
    assert stages["vision"] == pytest.approx(0.40e9, rel=0.05)
    ref = r.totals("reference")
    assert ref["params"] - r.totals("ours")["params"] > 4 * (REFERENCE_DIT_STEP - OURS_DIT_STEP) - stages["dit_context"]
    assert any("checked against 1031 safetensors headers" in n for n in r.notes)
    bad = dict(N17.roofline().stored_params(r.config), vl_self_attention=0)
    with pytest.raises(CheckpointError, match="vl_self_attention 0 "):
        check_stored_params(N17.roofline().stored_params(r.config), bad, "n17")
