"""Fixtures of the runtime tests: fake export directories (see runtime_fakes)."""

from __future__ import annotations

import pytest
from runtime_fakes import MIXED, FakeExport, write_fake_export

from gr00t_trt.runtime import OrtBackend

_BUILT: set = set()


def _ort(folder):
    return OrtBackend(device="cpu")


def _trt_standin(folder):
    """The TensorRT backend over the in-repo stand-in (tests/standin): engines built once per export."""
    from gr00t_trt.engines.build import BuildOptions, build_engines
    from gr00t_trt.runtime.trt_backend import TrtBackend

    if folder not in _BUILT:
        build_engines(folder, BuildOptions())
        _BUILT.add(folder)
    return TrtBackend()


#: every backend the pipeline and policy tests run on: name -> factory(export folder) of a fresh,
#: inactive backend. A backend joins the suite by adding itself here.
BACKEND_FACTORIES = {"ort": _ort, "trt-standin": _trt_standin}


@pytest.fixture(scope="module", params=sorted(BACKEND_FACTORIES))
def new_backend(request):
    """Makes a fresh backend of one kind for an export folder; pipeline and policy tests run once per
    registered kind (the TensorRT one with the stand-in installed as ``tensorrt``/``cuda.bindings``)."""
    if request.param == "trt-standin":
        import standin

        with standin.install():
            _BUILT.clear()
            yield BACKEND_FACTORIES[request.param]
    else:
        yield BACKEND_FACTORIES[request.param]


@pytest.fixture(scope="session")
def fake_export(tmp_path_factory) -> FakeExport:
    return write_fake_export(tmp_path_factory.mktemp("fake") / "fp32")


@pytest.fixture(scope="session")
def mixed_export(tmp_path_factory) -> FakeExport:
    return write_fake_export(tmp_path_factory.mktemp("fake") / "mixed", MIXED)
