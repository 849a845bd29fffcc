"""``gr00t-trt selftest``: one line and nothing written without a GPU; through the stand-in, every check
runs in order, a failing check is reported without stopping the others; on a GPU (``gpu`` marker) it passes."""

from __future__ import annotations

import shutil
from pathlib import Path

import onnxruntime as ort
import pytest
import standin
from standin.cudart_lines import install_line
from typer.testing import CliRunner

from gr00t_trt.base.files import read_json
from gr00t_trt.cli import app
from gr00t_trt.workflows import selftest

CHECKS = ["export", "build + precision audit", "plans reused from cache", "TensorRT = ONNX Runtime",
          "verify vs PyTorch", "CUDA graphs on = off", "no allocation per step", "bench"]


@pytest.mark.parametrize("line", [None, "12.6.2", "13.4"])
def test_without_a_gpu_it_says_so_in_one_line_and_writes_nothing(line, tmp_path):
    out = tmp_path / "report"
    if line is None:  # this machine: cuda-python (or TensorRT) is not installed
        result = CliRunner().invoke(app, ["selftest", "--out", str(out)])
    else:
        with install_line(line, driver=0 if line == "12.6.2" else 12060):
            result = CliRunner().invoke(app, ["selftest", "--out", str(out)])
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert lines[0].startswith("error: no GPU — selftest needs an NVIDIA GPU with TensorRT and cuda-python: ")
    assert not out.exists()


def test_precision_the_gpu_lacks_is_refused_before_any_work(tmp_path):
    with standin.install() as state:
        state.compute_capability = (8, 7)  # Orin: no fp8
        with pytest.raises(selftest.EngineError, match=r"--precision fp8: not supported by Stand-in GPU \(sm 8.7\) — "
                                                      r"expected one of: fp32, fp16, bf16"):
            selftest.run_selftest(tmp_path / "r", precisions=("fp8",), say=lambda _: None)
    assert not (tmp_path / "r").exists()
    assert selftest.supported_precisions((8, 9)) == ["fp32", "fp16", "bf16", "fp8"]
    assert selftest.supported_precisions((7, 5)) == ["fp32", "fp16"]


def test_orchestration_through_the_standin(tiny_checkpoint, tiny_export, tmp_path, monkeypatch):
    """Every check on the tiny fp32 export (copied, not re-exported), the report files, and a failing
    check that is reported while the rest still run."""
    from gr00t_trt.families.registry import DEFAULT_FAMILY

    monkeypatch.setattr(DEFAULT_FAMILY.export(), "make_checkpoint", lambda *a, **k: tiny_checkpoint)
    monkeypatch.setattr(selftest, "_export", lambda ckpt, folder, precision: str(shutil.copytree(tiny_export, folder)))
    said: list[str] = []
    monkeypatch.setattr(selftest, "STEADY_STEPS", 10)  # fewer steps keep the test quick; the checks are the same
    monkeypatch.setattr(selftest, "BENCH_ITERS", 5)
    # the stand-in runs in Python what TensorRT and CUDA run natively: its allocations are not ours
    monkeypatch.setattr(selftest, "HEAP_IGNORED", (f"{Path(standin.__file__).parent}/*", f"{Path(ort.__file__).parent}/*"))
    with standin.install() as state:
        monkeypatch.setattr(selftest, "device_memory_in_use", lambda: sum(a.nbytes for a, _ in state.heap.values()))
        real_graphs = selftest._graphs_on_off
        monkeypatch.setattr(selftest, "_graphs_on_off", lambda folder: (_ for _ in ()).throw(AssertionError("boom")))
        report = selftest.run_selftest(tmp_path / "r", presets=("tiny",), precisions=("fp32",), say=said.append)
        assert [c.name for c in report.checks] == CHECKS
        failed = {c.name: c.detail for c in report.checks if not c.passed}
        assert failed["CUDA graphs on = off"].startswith("AssertionError: boom") and not report.passed
        # the pipeline's own Python heap grows ~1 KB/step on ONNX Runtime too (issue 16 report): measured, not hidden
        steady = next(c for c in report.checks if c.name == "no allocation per step")
        assert steady.detail.startswith(("device memory flat", "AssertionError: the Python heap grew"))
        assert set(failed) <= {"CUDA graphs on = off", "no allocation per step"}
        assert "reused" in report.checks[2].detail and "within the verify thresholds" in report.checks[4].detail
        data = read_json(tmp_path / "r" / "selftest.json", "the selftest report", expect=dict)
        assert data["passed"] is False and data["gpu"]["name"] == "Stand-in GPU" and data["doctor"]["gpu"].startswith("Stand-in GPU")
        assert set(data["bench"]) == {"tiny-fp32"} and data["bench"]["tiny-fp32"]["p50"] > 0
        markdown = (tmp_path / "r" / "selftest.md").read_text()
        assert markdown.startswith(f"# gr00t-trt selftest: FAILED ({len(failed)} checks)") and "| tiny | fp32 | CUDA graphs on = off | **FAIL** |" in markdown
        assert any("tiny fp32: verify vs PyTorch ..." in line for line in said)
        folder = tmp_path / "r" / "exports" / "tiny-fp32"
        assert real_graphs(folder).startswith("bitwise equal")
        grows = iter(range(0, 1 << 20, 256))  # device memory in use that grows at every look
        monkeypatch.setattr(selftest, "device_memory_in_use", lambda: next(grows))
        with pytest.raises(AssertionError, match=r"^device memory in use grew by 256 bytes over 10 steps"):
            selftest._steady_state(folder)


@pytest.mark.gpu
def test_selftest_passes_on_this_gpu(tmp_path):
    report = selftest.run_selftest(tmp_path / "r", presets=("tiny",), say=lambda _: None)
    assert report.passed, [(c.precision, c.name, c.detail) for c in report.checks if not c.passed]
    assert (tmp_path / "r" / "selftest.json").is_file() and (tmp_path / "r" / "selftest.md").is_file()
