"""The ``gpu`` marker: auto-skip with a reason on machines without a usable GPU, and the run's summary
line counting gpu tests that ran and that were skipped."""

from __future__ import annotations

from pathlib import Path

import pytest

CONFTEST_PATH = Path(__file__).parent / "conftest.py"
CONFTEST = CONFTEST_PATH.read_text()

INNER_TESTS = """
import pytest

@pytest.mark.gpu
def test_on_gpu_one():
    pass

@pytest.mark.gpu
def test_on_gpu_two():
    pass

def test_on_cpu():
    pass
"""


@pytest.fixture
def gpu_unusable_reason(request):
    """The root conftest's probe, as this session loaded it."""
    (conftest,) = [p for p in request.config.pluginmanager.get_plugins()
                   if getattr(p, "__file__", None) == str(CONFTEST_PATH)]
    return conftest.gpu_unusable_reason


@pytest.fixture
def inner(pytester):
    pytester.makeconftest(CONFTEST.replace('pytest_plugins = ["pytester"]', ""))
    pytester.makeini("[pytest]\nmarkers =\n    gpu: needs a CUDA GPU\n")
    pytester.makepyfile(test_inner=INNER_TESTS)
    return pytester


def test_gpu_tests_are_skipped_with_a_reason_and_counted(inner, gpu_unusable_reason):
    result = inner.runpytest("-rs")
    reason = gpu_unusable_reason()
    if reason is None:  # a GPU machine: they run
        result.assert_outcomes(passed=3)
        result.stdout.fnmatch_lines(["*gpu tests: 2 selected, 2 ran, 0 skipped*"])
    else:
        result.assert_outcomes(passed=1, skipped=2)
        result.stdout.fnmatch_lines([f"SKIPPED*gpu test: needs a CUDA GPU with TensorRT and cuda-python — {reason}*"])
        result.stdout.fnmatch_lines([f"*gpu tests: 2 selected, 0 ran, 2 skipped ({reason})*"])


def test_summary_counts_gpu_tests_that_ran(inner):
    """Pretend the GPU is usable: the inner conftest's probe is replaced, the gpu tests run and count."""
    inner.makeconftest(
        CONFTEST.replace('pytest_plugins = ["pytester"]', "")
        + "\n\ngpu_unusable_reason = lambda: None  # this inner session pretends a GPU is present\n"
    )
    result = inner.runpytest()
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*gpu tests: 2 selected, 2 ran, 0 skipped*"])


def test_this_machine_reports_why(gpu_unusable_reason):
    reason = gpu_unusable_reason()
    assert reason is None or reason.startswith(("tensorrt", "cuda-python", "no CUDA device"))
