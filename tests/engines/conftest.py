"""Fixtures of the engine tests: the stand-in installed as ``tensorrt``/``cuda.bindings.runtime``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # make tests/standin importable

import standin  # noqa: E402


@pytest.fixture
def standin_trt():
    with standin.install() as state:
        yield state
