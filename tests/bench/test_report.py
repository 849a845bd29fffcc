"""Report writers: JSON schema, markdown, console at 80 columns, PNG (when matplotlib is installed)."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from gr00t_trt.bench.report import leaf_stages, render_console, to_markdown, write_json, write_png


def test_json_schema(tiny_report, tmp_path):
    path = write_json(tmp_path / "bench.json", tiny_report.to_dict())
    data = json.loads(path.read_text())
    assert data["schema"] == "gr00t-trt-bench/1"
    assert {"header", "first_call_ms", "end_to_end_ms", "stages_ms", "peak_rss_bytes", "samples_ms", "roofline"} <= set(data)
    for key in ("p50", "p90", "p99", "mean", "std", "hz", "n"):
        assert key in data["end_to_end_ms"]
    assert list(data["stages_ms"]) == list(tiny_report.stages)
    assert len(data["samples_ms"]["end_to_end"]) == 6
    header = data["header"]
    for key in ("machine", "precisions", "shape_bucket", "image_sizes", "steps", "backend", "batch", "cameras"):
        assert key in header
    for key in ("device", "cpu", "cpu_threads", "versions", "power_mode", "git", "nvidia_driver"):
        assert key in header["machine"]
    roof = data["roofline"]["sides"]
    assert roof["ours"]["per_control_step"]["weight_bytes"] > 0 and roof["reference"]["per_control_step"]["flops"] > 0
    assert data["device"]["key"] == "thor" and data["measured_over_floor"]["total"] > 1
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, nothing left behind


def test_markdown(tiny_report):
    md = to_markdown(tiny_report)
    assert md.startswith("# gr00t-trt bench")
    assert "| stage | p50 ms | p90 | p99 | mean | std | Hz |" in md
    assert "| **end to end** |" in md and "| vision |" in md
    assert "## Roofline (per control step)" in md and "## Measured ÷ floor on Jetson AGX Thor" in md
    assert f"{tiny_report.end_to_end.p50:.2f}" in md


def test_console_fits_80_columns(tiny_report):
    console = Console(width=80, record=True, force_terminal=False)
    render_console(tiny_report, console)
    text = console.export_text()
    assert "latency (ms)" in text and "end to end" in text and "first call" in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_leaf_stages():
    assert leaf_stages(dict.fromkeys(["preprocess", "vision", "action_head", "pipeline", "decode", "total"])) == [
        "preprocess", "vision", "action_head", "decode"]
    detailed = dict.fromkeys(["vision", "action_head", "state_encoder", "denoise_0", "total"])
    assert leaf_stages(detailed) == ["vision", "state_encoder", "denoise_0"]


def test_png(tiny_report, tmp_path):
    pytest.importorskip("matplotlib")
    path = write_png(tiny_report, tmp_path / "bench.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert [p.name for p in tmp_path.iterdir()] == ["bench.png"]
