"""Where the golden tokenizer tests find the real Eagle files, and that CI cannot silently skip them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import EAGLE_TOKENIZER_ENV, REPO_ROOT, eagle_tokenizer_dir

GOLDEN_TEST = "tests/processing/test_tokenizer.py::test_no_special_tokens_are_added"


def test_folder_is_beside_the_checkout_unless_overridden(monkeypatch, tmp_path):
    monkeypatch.delenv(EAGLE_TOKENIZER_ENV, raising=False)
    assert eagle_tokenizer_dir() == REPO_ROOT.parent / "shared" / "eagle-tokenizer"
    assert (REPO_ROOT / "pyproject.toml").is_file()  # REPO_ROOT really is the checkout
    monkeypatch.setenv(EAGLE_TOKENIZER_ENV, str(tmp_path))
    assert eagle_tokenizer_dir() == tmp_path


def _run_golden_test(**env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("CI", EAGLE_TOKENIZER_ENV)} | env
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", GOLDEN_TEST],
        cwd=REPO_ROOT, env=environ, capture_output=True, text=True, timeout=300,
    )


@pytest.fixture(scope="module")
def missing(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("no-tokenizer")


def test_missing_files_fail_in_ci(missing):
    result = _run_golden_test(CI="true", **{EAGLE_TOKENIZER_ENV: str(missing)})
    assert result.returncode == 1, result.stdout + result.stderr
    final = result.stdout.strip().splitlines()[-1]  # e.g. "1 error in 1.9s"
    assert "1 error" in final and "skipped" not in final, result.stdout
    assert f"CI=true: real Eagle tokenizer files not found in {missing}" in result.stdout


def test_missing_files_skip_with_the_reason_outside_ci(missing):
    result = _run_golden_test(**{EAGLE_TOKENIZER_ENV: str(missing)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout.strip().splitlines()[-1] and f"real Eagle tokenizer files not found in {missing}" in result.stdout
