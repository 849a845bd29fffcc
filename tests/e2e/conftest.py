"""Fixtures of the end-to-end tests: one single-embodiment export made through the CLI, shared by the
test of the export command and the test of embodiment slicing (a tiny export costs about a minute)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class CliExport:
    folder: Path
    output: str  # what `gr00t-trt export` printed
    exit_code: int


@pytest.fixture(scope="session")
def cli_export(tiny_checkpoint, tmp_path_factory) -> CliExport:
    """`export --embodiment new_embodiment --image-size 252x448 --steps 3 --graph-precision dit=fp16`."""
    from typer.testing import CliRunner

    from gr00t_trt.cli import app

    folder = tmp_path_factory.mktemp("cli-export") / "exp"
    result = CliRunner().invoke(app, ["export", "--checkpoint", str(tiny_checkpoint), "--out", str(folder),
                                      "--embodiment", "new_embodiment", "--image-size", "252x448", "--steps", "3",
                                      "--graph-precision", "dit=fp16"])
    return CliExport(folder, result.output, result.exit_code)
