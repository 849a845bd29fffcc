"""inspect: exact parameter counts of the full model from a header-only checkpoint (spec §6), layout
verdicts, dtype mix, embodiments, engine estimates, and never reading a weight."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import pytest

from gr00t_trt.families.n16.presets import preset_config
from gr00t_trt.families.n16.synthetic import make_header_only_checkpoint
from gr00t_trt.model.inspect import inspect_checkpoint

#: spec §6, derived independently from the published architecture
FULL_COUNTS = {
    ("vision", None): 412_442_352,
    ("vision pooling head", None): 15_238_352,
    ("projector", None): 13_644_800,
    ("LLM embed", None): 310_640_640,
    ("LLM layers + norm", None): 805_378_048,
    ("lm_head", None): 310_640_640,
    ("VLLN", None): 4_096,
    ("state encoder", None): 54_607_872,
    ("action encoder", None): 232_931_328,
    ("DiT", None): 1_091_722_240,
    ("timestep encoder", "DiT"): 2_755_584,
    ("cross-attn blocks", "DiT"): 553_918_464,
    ("self-attn blocks", "DiT"): 528_752_640,
    ("output layer", "DiT"): 6_295_552,
    ("action decoder", None): 37_785_600,
    ("position embedding", None): 1_572_864,
}


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    folder = make_header_only_checkpoint(tmp_path_factory.mktemp("full") / "full", preset_config("full"))
    return inspect_checkpoint(folder)


def test_full_counts_are_exact(full_report):
    r = full_report
    assert r.total_params_without_lm_head == 2_975_968_192
    assert r.total_params == 3_286_608_832
    assert r.num_tensors == 1106
    for (name, parent), params in FULL_COUNTS.items():
        assert r.component(name, parent).params == params, name
    assert [c.name for c in r.components if c.unused] == ["vision pooling head", "lm_head"]
    assert r.layout.ok and len(r.layout.skipped) == 12


def test_full_dtype_mix_and_engine_estimates(full_report):
    r = full_report
    assert r.dtypes == {"BF16": (633, 1_867_984_832), "F32": (473, 1_418_624_000)}
    # fp16: 2 bytes for everything exported = all but lm_head, pooling head, position rows ≥ 50
    exported = 2_975_968_192 - 15_238_352 - (1024 - 50) * 1536
    estimates = {e.group: e for e in r.engines}
    assert estimates["total"].fp16_bytes == 2 * exported
    # fp8: the GEMM weights of vision layers, DiT blocks and the LLM layers the backbone's plan
    # quantises (q/k/v and gate/up of layers 1-15; layer 0, o_proj and down_proj stay fp16) drop to 1 byte
    vision = 27 * (4 * 1152 * 1152 + 2 * 1152 * 4304)
    llm = 15 * (2048 * 2048 + 2 * 1024 * 2048 + 2 * 6144 * 2048)
    dit = 16 * (2 * 1536 * 1536 + 2 * 1536 * 2048 + 2 * 6144 * 1536) + 16 * (
        4 * 1536 * 1536 + 2 * 6144 * 1536
    )
    assert estimates["total"].fp8_bytes == 2 * exported - (vision + llm + dit)
    assert estimates["vision"].fp16_bytes == 2 * (412_442_352 + 13_644_800)
    assert estimates["backbone"].fp16_bytes == 2 * (310_640_640 + 805_378_048)
    assert sum(e.fp16_bytes for e in r.engines if e.group != "total") == estimates["total"].fp16_bytes


def test_rows_summary_and_json(full_report):
    rows = full_report.rows()
    assert all(isinstance(n, str) and isinstance(c, int) and isinstance(note, str) for n, c, note in rows)
    assert ("total without lm_head", 2_975_968_192, "") in rows
    assert any(n.strip().endswith("cross-attn blocks") and n.startswith("  ") for n, _, _ in rows)
    lines = full_report.summary_lines()
    assert lines[0].startswith("layout: OK") and all("\n" not in line for line in lines)
    data = json.loads(json.dumps(full_report.to_dict()))
    assert data["total_params"] == 3_286_608_832 and data["layout"]["ok"]
    # no processor files in a header-only checkpoint: built-in ids only, and notes say so
    assert full_report.embodiment_ids["gr1"] == 20 and full_report.modality_configs == {}
    assert any("processor_config.json not found" in n for n in full_report.notes)


def test_tiny_checkpoint_embodiments(tiny_checkpoint):
    report = inspect_checkpoint(tiny_checkpoint)
    assert report.layout.ok
    ids = json.loads((tiny_checkpoint / "embodiment_id.json").read_text())
    for tag, value in ids.items():
        assert (
            report.embodiment_ids[tag] == value and report.embodiment_id_source[tag] == "embodiment_id.json"
        )
    assert report.embodiment_id_source["oxe_google"] == "built-in"
    processor = json.loads((tiny_checkpoint / "processor_config.json").read_text())
    tags = processor["processor_kwargs"]["modality_configs"]
    assert set(report.modality_configs) == set(tags)
    for tag, summary in report.modality_configs.items():
        assert summary["state"] == tags[tag]["state"]["modality_keys"]
        assert summary["action_horizon"] == len(tags[tag]["action"]["delta_indices"])
    assert set(report.dtypes) == {"BF16", "F32"}


def test_inspect_reads_no_weights(tiny_checkpoint, monkeypatch):
    import safetensors
    import torch

    def forbidden(*args, **kwargs):
        raise AssertionError("inspect must not read tensor data")

    monkeypatch.setattr(safetensors, "safe_open", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    assert inspect_checkpoint(tiny_checkpoint).total_params > 0


def test_mismatch_is_reported_not_raised(tiny_checkpoint, tmp_path):
    folder = tmp_path / "c"
    shutil.copytree(tiny_checkpoint, folder)
    config = json.loads((folder / "config.json").read_text())
    config["select_layer"] = 1
    (folder / "config.json").write_text(json.dumps(config))
    report = inspect_checkpoint(folder)
    assert not report.layout.ok
    assert (
        report.summary_lines()[0].startswith("layout: MISMATCH") and "layers.1." in report.summary_lines()[0]
    )


def test_hub_id_reads_headers_remotely(tiny_checkpoint, monkeypatch):
    """For a Hub id only JSON files are downloaded; tensors come from remote safetensors headers."""
    import huggingface_hub

    from gr00t_trt.model.checkpoint import read_tensor_index

    local = read_tensor_index(tiny_checkpoint)
    files = {}
    for key, info in local.items():
        files.setdefault(info.file, {})[key] = SimpleNamespace(
            dtype=info.dtype, shape=list(info.shape), data_offsets=(0, info.nbytes)
        )
    patterns = {}

    def fake_download(repo_id, allow_patterns=None, **kwargs):
        patterns["value"] = allow_patterns
        return str(tiny_checkpoint)

    def fake_metadata(repo_id, **kwargs):
        return SimpleNamespace(files_metadata={f: SimpleNamespace(tensors=t) for f, t in files.items()})

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    monkeypatch.setattr(huggingface_hub, "get_safetensors_metadata", fake_metadata)
    import gr00t_trt.model.checkpoint as checkpoint_module

    monkeypatch.setattr(checkpoint_module, "hub_offline", lambda: False)  # this sandbox cannot reach the Hub
    report = inspect_checkpoint("nvidia/GR00T-N1.6-3B")
    assert patterns["value"] == ["*.json"]
    assert report.layout.ok and report.total_params == sum(i.numel for i in local.values())
