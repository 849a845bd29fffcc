"""Fixtures of the runtime tests: fake export directories (see runtime_fakes)."""

from __future__ import annotations

import pytest
from runtime_fakes import MIXED, FakeExport, write_fake_export


@pytest.fixture(scope="session")
def fake_export(tmp_path_factory) -> FakeExport:
    return write_fake_export(tmp_path_factory.mktemp("fake") / "fp32")


@pytest.fixture(scope="session")
def mixed_export(tmp_path_factory) -> FakeExport:
    return write_fake_export(tmp_path_factory.mktemp("fake") / "mixed", MIXED)
