"""Every output path is checked before the work, in one line, with one policy for missing parent
folders: refused by every command (issue 17, item 17). Nothing here loads an export."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from gr00t_trt.cli import app

runner = CliRunner()


@pytest.fixture
def places(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    (tmp_path / "export").mkdir()
    return tmp_path


CASES = [
    (["run", "{t}/export", "--synthetic", "--out", "{t}/fifo"], "--out {t}/fifo: it is a device, FIFO or socket"),
    (["run", "{t}/export", "--synthetic", "--out", "{t}/folder"], "--out {t}/folder: it is a folder"),
    (["run", "{t}/export", "--synthetic", "--save-obs", "{t}/fifo"], "--save-obs {t}/fifo: it is a device, FIFO"),
    (["run", "{t}/export", "--synthetic", "--record", "{t}/file"], "--record {t}/file: it is not a folder"),
    (["run", "{t}/export", "--synthetic", "--record", "{t}/fifo"], "--record {t}/fifo: it is not a folder"),
    (["verify", "{t}/export", "-c", "{t}/x", "--json", "{t}/folder"], "--json {t}/folder: it is a folder"),
    (["inspect", "{t}/export", "--json", "{t}/folder"], "--json {t}/folder: it is a folder"),
    (["bench", "{t}/export", "--json", "{t}/folder"], "--json {t}/folder: it is a folder"),
    (["bench", "{t}/export", "--markdown", "{t}/missing/r.md"], "--markdown {t}/missing/r.md: folder {t}/missing does not exist"),
    (["bench", "{t}/export", "--json", "{t}/missing/r.json"], "folder {t}/missing does not exist"),
]
if os.path.isdir("/proc"):
    CASES += [
        (["run", "{t}/export", "--synthetic", "--out", "/proc/a.npz"], "--out /proc/a.npz: cannot create a file in /proc"),
        (["verify", "{t}/export", "-c", "{t}/x", "--json", "/proc/r.json"], "--json /proc/r.json: cannot create a file"),
        (["bench", "{t}/export", "--markdown", "/proc/x.md"], "--markdown /proc/x.md: cannot create a file in /proc"),
    ]


@pytest.mark.parametrize("args, match", CASES)
def test_unwritable_outputs_are_refused_in_one_line_before_any_work(places, args, match):
    before = sorted(p.name for p in places.iterdir())
    result = runner.invoke(app, [a.format(t=places) for a in args])
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert "Traceback" not in result.output and match.format(t=places) in text, result.output
    assert sorted(p.name for p in places.iterdir()) == before  # nothing created, the FIFO still a FIFO
    assert not list((places / "folder").iterdir())


@pytest.mark.parametrize("precisions", [{"backbone": "int8", "dit": "int8", "vision": "fp16"},
                                        {"backbone": "bf16", "dit": "fp8"}, {"dit": "fp32"}, {}])
def test_the_threshold_note_names_every_precision_an_export_can_have(precisions):
    """verify's closing line once crashed on int8 exports (its order list knew fp32/fp16/fp8 only)."""
    from gr00t_trt.cli.render import threshold_note
    from gr00t_trt.verification.parity import threshold_for

    note = threshold_note(precisions)
    for precision in set(precisions.values()) - {"fp32"}:
        judged = "fp16" if precision == "bf16" else precision
        assert f"backbone {threshold_for('backbone', judged).describe()}" in note
    assert ("int8:" in note) == ("int8" in precisions.values())
