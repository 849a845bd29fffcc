"""Comparisons under load: the contention verdict, ratios marked or withheld in every output, the PNG's
spread and note, and a real `bench --compare-reference` run next to synthetic CPU hogs."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
from rich.console import Console
from typer.testing import CliRunner

from gr00t_trt.bench.contention import NOISY_CORES, Contention
from gr00t_trt.bench.reference import ReferenceComparison
from gr00t_trt.bench.report import render_console, to_markdown
from gr00t_trt.bench.stats import summarize


def test_verdict_from_other_load_and_the_moving_gemm_rate():
    quiet = Contention({"ours": 0.05, "reference": None}, [30.0, 31.0])
    assert not quiet.noisy and quiet.reasons() == [] and quiet.note().startswith("quiet")
    busy = Contention({"ours": 0.1, "reference": 1.4})
    assert busy.noisy and busy.reasons() == ["other processes used 1.40 cores during reference"]
    drifting = Contention({"ours": 0.0}, [25.0, 39.0])  # the run that reported "0.7× the floor"
    assert drifting.noisy and "moved 25 → 39 GFLOP/s" in drifting.note()
    assert Contention({"ours": NOISY_CORES}).noisy is False  # the bound itself is still quiet
    assert json.loads(json.dumps(busy.to_dict()))["noisy"] is True


def _compared(report, contention: Contention, allow_noisy: bool = False):
    """The session's report with a reference comparison (23.84× end to end) and the given verdict."""
    out = copy.copy(report)
    ref, ours = summarize([4571.0, 4600.0]), summarize([191.7, 195.0])
    stages = {"vision": (summarize([900.0]), summarize([40.0])), "backbone": (summarize([1600.0]), summarize([60.0]))}
    out.reference = ReferenceComparison("interleaved", 2, {k: r for k, (r, _) in stages.items()}, ref,
                                        {k: o for k, (_, o) in stages.items()}, ours,
                                        {"rel_l2": 1e-7, "max_abs": 1e-6, "cosine": 1.0}, 1.4)
    out.contention, out.allow_noisy = contention, allow_noisy
    return out


def _console_text(report) -> str:
    console = Console(width=80, record=True, force_terminal=False)
    render_console(report, console)
    return console.export_text()


def test_a_noisy_comparison_withholds_speedups_everywhere(tiny_report):
    noisy = _compared(tiny_report, Contention({"ours": 1.4}, [25.0, 39.0]))
    text = _console_text(noisy)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "NOISY: other processes used 1.40 cores during ours" in " ".join(text.split())
    compared = text.split("vs PyTorch reference")[1]
    assert compared.count("withheld") == 4 and "×" not in compared  # 3 rows and the note under them
    assert "pass --allow-noisy" in " ".join(text.split())
    section = to_markdown(noisy).split("## Against the PyTorch reference")[1]
    table = [line for line in section.splitlines() if line.startswith("| ") and "stage" not in line]
    assert len(table) == 3 and all(line.endswith("| withheld |") for line in table)
    data = noisy.to_dict()
    assert data["contention"]["noisy"] is True
    assert all(row["speedup"] is None for row in data["reference"]["rows_p50_ms"].values())
    # the measured ÷ floor ratios of the same run are marked too (a floor measured under load lies)
    floor_rows = [line for line in text.split("roofline on")[1].splitlines() if "×" in line]
    assert floor_rows and all("(noisy)" in line for line in floor_rows)


def test_allow_noisy_prints_every_ratio_marked(tiny_report):
    marked = _compared(tiny_report, Contention({"ours": 1.4}), allow_noisy=True)
    text = _console_text(marked)
    ratios = [line for line in text.splitlines() if "×" in line]
    assert ratios and all("(noisy)" in line for line in ratios)
    assert "23.72× (noisy)" in text  # 4585.5 / 193.35, printed — and marked
    assert "(noisy)" in to_markdown(marked) and marked.to_dict()["reference"]["rows_p50_ms"]["end to end"]["speedup"]


def test_a_quiet_comparison_prints_plain_ratios(tiny_report):
    quiet = _compared(tiny_report, Contention({"ours": 0.0, "reference": 0.01}, [30.0, 30.5]))
    text = _console_text(quiet)
    assert "(noisy)" not in text and "withheld" not in text and "quiet: other processes used" in text
    assert quiet.to_dict()["reference"]["rows_p50_ms"]["end to end"]["speedup"] == pytest.approx(4585.5 / 193.35)


def test_png_shows_spread_the_note_and_the_reference_beside_ours(tiny_report):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from gr00t_trt.bench.report import bench_figure

    fig = bench_figure(_compared(tiny_report, Contention({"ours": 1.4})))
    try:
        ax = fig.axes[0]
        labels = [t.get_text() for t in ax.get_yticklabels()]
        texts = " ".join(t.get_text() for t in ax.texts) + " " + " ".join(t.get_text() for t in fig.texts)
        assert labels == ["ours (ort)", "PyTorch reference"]
        for stats in (summarize([4571.0, 4600.0]), summarize([191.7, 195.0])):  # both sides' p50 and p99
            assert f"p50 {stats.p50:.1f} ms" in texts and f"p99 {stats.p99:.1f} ms" in texts
        assert "NOISY: other processes used 1.40 cores" in texts
    finally:
        plt.close(fig)


@pytest.mark.slow
def test_bench_under_synthetic_contention(tiny_export, tiny_checkpoint, tmp_path):
    """Two busy-looping processes share the CPU while `bench --compare-reference` times both sides: the
    run is found noisy, the speed-ups are withheld, and --allow-noisy prints them marked. A roofline device
    is named so that the CPU's own GEMM rate is not measured (three seconds-long probes per run under the
    load): what finds the run noisy here is the other processes' CPU time."""
    from gr00t_trt.cli import app

    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        args = ["bench", str(tiny_export), "--embodiment", "unitree_g1", "--backend", "ort", "--iters", "3",
                "--warmup", "1", "--compare-reference", str(tiny_checkpoint), "--reference-iters", "2",
                "--device", "thor"]
        withheld = CliRunner().invoke(app, [*args, "--json", str(tmp_path / "a.json")])
        assert withheld.exit_code == 0, withheld.output
        data = json.loads((tmp_path / "a.json").read_text())
        assert data["contention"]["noisy"], data["contention"]
        assert any("other processes used" in r for r in data["contention"]["reasons"])
        assert all(row["speedup"] is None for row in data["reference"]["rows_p50_ms"].values())
        assert "withheld" in withheld.output and "×" not in withheld.output.split("vs PyTorch reference")[1]
        allowed = CliRunner().invoke(app, [*args, "--allow-noisy"])
        assert allowed.exit_code == 0, allowed.output
        ratios = [line for line in allowed.output.split("vs PyTorch reference")[1].splitlines() if "×" in line]
        assert len(ratios) == 6 and all("(noisy)" in line for line in ratios)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
