"""Session fixtures: the three real TensorRT modules and the real cuda-python, each probed once."""

from __future__ import annotations

import pytest

from .harness import REAL_TRT, Unavailable, fetch_cuda_python, real_trt, run_probe

_cache: dict[str, object] = {}


def _get(key, make):
    if key not in _cache:
        try:
            _cache[key] = make()
        except Unavailable as exc:
            _cache[key] = exc
    value = _cache[key]
    if isinstance(value, Unavailable):
        pytest.skip(str(value))
    return value


@pytest.fixture(scope="session")
def cuda_python_dirs():
    return _get("cuda", fetch_cuda_python)


@pytest.fixture(scope="session", params=sorted(REAL_TRT, key=lambda v: tuple(map(int, v.split(".")))))
def real_version(request):
    """Each real TensorRT label in turn (10.3, 10.13, 11.4) with its (module folder, stub folder)."""
    return request.param, _get(f"trt-{request.param}", lambda: real_trt(request.param))


@pytest.fixture(scope="session")
def probe(cuda_python_dirs):
    """``probe(label, trt_dirs, sections, payload)``: one subprocess per distinct request, cached."""
    results: dict = {}

    def run(label, trt_dirs, sections, payload=None):
        key = (label, sections, repr(sorted((payload or {}).items())))
        if key not in results:
            results[key] = run_probe(sections, trt=trt_dirs, cuda=cuda_python_dirs, payload=payload)
        return results[key]

    return run
