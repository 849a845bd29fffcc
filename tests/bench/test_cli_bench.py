"""`gr00t-trt bench`: one-line errors before any work, a full run writing every format, --model-only."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from gr00t_trt.cli import app

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, ["bench", *args], env={"COLUMNS": "80"})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{dir}", "--backend", "tpu"], "unknown backend 'tpu' — expected one of: auto, ort, trt"),
        (["{dir}", "--iters", "0"], "--iters must be at least 1, got 0"),
        (["{dir}", "--warmup", "-1"], "--warmup must be 0 or more, got -1"),
        (["{missing}"], "export directory not found: "),
        ([], "bench needs an export directory"),
        (["--model-only"], "--model-only needs exactly one of an export DIR or --checkpoint CKPT"),
        (["{dir}", "--obs", "x.npz", "--synthetic"], "give one of --obs FILE.npz or --synthetic, not both"),
        (["{dir}", "--plot", "chart.jpg"], "--plot writes a PNG"),
        (["{dir}", "--model-only", "--precision", "int4"], "--precision 'int4' — expected one of"),
        (["{dir}", "--device", "tpu"], "unknown device 'tpu'"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path, args, message):
    folder = tmp_path / "export"
    folder.mkdir()  # an empty folder: any work beyond option checks would fail on its missing manifest
    args = [a.format(dir=folder, missing=tmp_path / "nope") for a in args]
    result = _run(*args)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_full_run_writes_every_format(tiny_export, tmp_path):
    out = {ext: tmp_path / f"bench.{ext}" for ext in ("json", "md", "png")}
    args = [str(tiny_export), "--backend", "ort", "--iters", "3", "--warmup", "1", "--embodiment", "libero_panda",
            "--json", str(out["json"]), "--markdown", str(out["md"])]
    has_plot = True
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        has_plot = False
    if has_plot:
        args += ["--plot", str(out["png"])]
    result = _run(*args)
    assert result.exit_code == 0, result.output
    assert "latency (ms)" in result.output and "end to end" in result.output
    data = json.loads(out["json"].read_text())
    assert data["end_to_end_ms"]["n"] == 3 and data["header"]["embodiment"] == "libero_panda"
    assert out["md"].read_text().startswith("# gr00t-trt bench")
    assert out["png"].is_file() == has_plot


def test_cameras_must_match_the_embodiment(tiny_export):
    result = _run(str(tiny_export), "--backend", "ort", "--cameras", "5", "--embodiment", "libero_panda")
    assert result.exit_code == 1 and "--cameras 5: embodiment 'libero_panda' has 2 camera(s)" in result.output


def test_model_only_from_export_and_checkpoint(tiny_export, tiny_checkpoint, tmp_path):
    result = _run(str(tiny_export), "--model-only", "--json", str(tmp_path / "a.json"), "--device", "thor")
    assert result.exit_code == 0, result.output
    assert "DiT weights per denoising step" in result.output
    a = json.loads((tmp_path / "a.json").read_text())
    assert a["schema"] == "gr00t-trt-roofline/1" and set(a["floors_ms"]) == {"thor"}
    assert set(a["precisions"].values()) == {"fp32"}
    result = _run("--model-only", "--checkpoint", str(tiny_checkpoint), "--precision", "fp16",
                  "--json", str(tmp_path / "b.json"), "--markdown", str(tmp_path / "b.md"))
    assert result.exit_code == 0, result.output
    b = json.loads((tmp_path / "b.json").read_text())
    assert set(b["precisions"].values()) == {"fp16"} and len(b["floors_ms"]) == 6
    ours, ref = b["sides"]["ours"]["per_control_step"], b["sides"]["reference"]["per_control_step"]
    assert ours["weight_bytes"] < ref["weight_bytes"]
    assert "| Jetson AGX Thor (T5000) |" in (tmp_path / "b.md").read_text()
