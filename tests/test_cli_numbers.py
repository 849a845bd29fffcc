"""Numeric CLI options are checked in one place before any command runs (issue 17, item 6)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from gr00t_trt.cli import app

runner = CliRunner()


@pytest.mark.parametrize("args, match", [
    (["serve", "{tmp}", "--port", "70000"], "--port 70000 is out of range — expected a TCP port, at least 1 and at most 65535"),
    (["serve", "{tmp}", "--port", "-1"], "--port -1 is out of range"),
    (["serve", "{tmp}", "--port", "0"], "--port 0 is out of range"),
    (["serve", "{tmp}", "--max-message-mb", "nan"], "--max-message-mb nan is out of range — expected a size in MiB, above 0"),
    (["serve", "{tmp}", "--max-message-mb", "inf"], "--max-message-mb inf is out of range"),
    (["serve", "{tmp}", "--max-message-mb", "0"], "--max-message-mb 0.0 is out of range"),
    (["build", "{tmp}", "--dry-run", "--workspace-gb", "-1"], "--workspace-gb -1.0 is out of range — expected a size in GiB"),
    (["build", "{tmp}", "--workspace-gb", "nan"], "--workspace-gb nan is out of range"),
    (["build", "{tmp}", "--dry-run", "--opt-level", "-7"], "--opt-level -7 is out of range — expected a TensorRT builder "
                                                          "optimisation level, at least 0 and at most 5"),
    (["build", "{tmp}", "--opt-level", "6"], "--opt-level 6 is out of range"),
])
def test_out_of_range_numbers_are_one_line_errors_before_any_work(tmp_path, args, match):
    result = runner.invoke(app, [a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and match in " ".join(result.output.split()), result.output
    assert list(tmp_path.iterdir()) == []  # nothing written (no build.sh)
