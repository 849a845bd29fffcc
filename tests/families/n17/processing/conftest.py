"""Fixtures: the Qwen3 BPE files (read in place from shared/eagle-tokenizer, never copied)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from processing.conftest import EAGLE_TOKENIZER_ENV, eagle_tokenizer_dir, in_ci


@pytest.fixture(scope="session")
def qwen_bpe_dir() -> Path:
    """N1.6's Eagle folder holds the Qwen3 BPE that Qwen3-VL shares; missing files skip locally, fail in CI."""
    folder = eagle_tokenizer_dir()
    if not (folder / "vocab.json").is_file():
        message = f"Qwen3 BPE files (vocab.json, merges.txt) not found in {folder}; set {EAGLE_TOKENIZER_ENV}"
        if in_ci():
            pytest.fail(f"CI=true: {message}", pytrace=False)
        pytest.skip(message)
    return folder


@pytest.fixture(scope="session")
def qwen_tokenizer(qwen_bpe_dir):
    from gr00t_trt.families.n17.processing.tokenizer import load_qwen3_vl_tokenizer

    return load_qwen3_vl_tokenizer(qwen_bpe_dir)


def require(module: str, extra: str):
    """Import an optional test dependency: skip without it on a developer machine, fail in CI."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations checks PyPI on import otherwise
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        message = f"{module} is not installed (pip install -e '.[{extra}]')"
        if in_ci():
            pytest.fail(f"CI=true: {message}", pytrace=False)
        pytest.skip(message)
