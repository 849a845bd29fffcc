"""``run`` and ``bench`` take ``Policy.load``'s thread options (``serve`` too: tests/serve/test_serve_command.py)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from gr00t_trt.cli import app
from gr00t_trt.runtime.policy import Policy

runner = CliRunner()


@pytest.fixture
def loaded(monkeypatch):
    """The ONNX Runtime thread count of every Policy the command loads."""
    seen = []
    original = Policy.load.__func__

    def load(cls, *args, **kwargs):
        policy = original(cls, *args, **kwargs)
        seen.append(policy.pipeline.backend.threads)
        return policy

    monkeypatch.setattr(Policy, "load", classmethod(load))
    return seen


@pytest.mark.parametrize("command", [
    ["run", "--synthetic", "--embodiment", "unitree_g1"],
    ["bench", "--iters", "1", "--warmup", "0", "--embodiment", "unitree_g1"],
])
def test_threads_reach_the_backend(command, tiny_export, loaded):
    name, *rest = command
    result = runner.invoke(app, [name, str(tiny_export), "--backend", "ort", "--threads", "1", *rest])
    assert result.exit_code == 0, result.output
    assert loaded == [1]


def test_threads_must_be_positive(tiny_export):
    result = runner.invoke(app, ["run", str(tiny_export), "--synthetic", "--embodiment", "unitree_g1", "--threads", "0"])
    assert result.exit_code == 1 and "--threads must be at least 1, got 0" in result.output
