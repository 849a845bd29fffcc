"""Fixtures of the runtime tests: fake export directories (see runtime_fakes)."""

from __future__ import annotations

import pytest
from runtime_fakes import MIXED, FakeExport, write_fake_export

from gr00t_trt.runtime import OrtBackend

#: every backend the pipeline and policy tests run on: name -> factory of a fresh, inactive backend.
#: A backend joins the suite by adding itself here (the TensorRT stand-in does).
BACKEND_FACTORIES = {"ort": lambda: OrtBackend(device="cpu")}


@pytest.fixture(scope="module", params=sorted(BACKEND_FACTORIES))
def new_backend(request):
    """Makes a fresh backend of one kind; pipeline and policy tests run once per registered kind."""
    return BACKEND_FACTORIES[request.param]


@pytest.fixture(scope="session")
def fake_export(tmp_path_factory) -> FakeExport:
    return write_fake_export(tmp_path_factory.mktemp("fake") / "fp32")


@pytest.fixture(scope="session")
def mixed_export(tmp_path_factory) -> FakeExport:
    return write_fake_export(tmp_path_factory.mktemp("fake") / "mixed", MIXED)
