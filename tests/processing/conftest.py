"""Shared fixtures: synthetic processor files (tiny preset) and the real Eagle tokenizer files."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest

from gr00t_trt.families.n16.presets import preset_config
from gr00t_trt.families.n16.processing.modality import parse_processor_spec
from gr00t_trt.families.n16.synthetic_processor import write_processor_files, write_synthetic_tokenizer

#: the repository checkout this test file belongs to (tests/processing/conftest.py -> <repo>)
REPO_ROOT = Path(__file__).resolve().parents[2]
#: environment variable naming another folder of the real Eagle tokenizer files
EAGLE_TOKENIZER_ENV = "GR00T_TRT_EAGLE_TOKENIZER"


def eagle_tokenizer_dir() -> Path:
    """The real Isaac-GR00T Eagle-Block2A-2B-v2 tokenizer files, read in place (never copied into the
    repo): ``$GR00T_TRT_EAGLE_TOKENIZER`` when set, else ``shared/eagle-tokenizer`` beside the checkout."""
    override = os.environ.get(EAGLE_TOKENIZER_ENV)
    return Path(override) if override else REPO_ROOT.parent / "shared" / "eagle-tokenizer"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


@pytest.fixture(scope="session")
def eagle_dir() -> Path:
    """Missing files skip the golden tests on a developer machine and fail them in CI (``CI=true``)."""
    folder = eagle_tokenizer_dir()
    if not (folder / "vocab.json").is_file():
        message = (
            f"real Eagle tokenizer files not found in {folder} — expected vocab.json, merges.txt, "
            f"tokenizer_config.json there; set {EAGLE_TOKENIZER_ENV} to the folder that holds them"
        )
        if in_ci():
            pytest.fail(f"CI=true: {message}", pytrace=False)
        pytest.skip(message)
    return folder


@pytest.fixture(scope="session")
def eagle_tokenizer(eagle_dir):
    from gr00t_trt.processing.tokenizer import load_tokenizer

    return load_tokenizer(eagle_dir)


@pytest.fixture(scope="session")
def tiny_config():
    return preset_config("tiny")


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory, tiny_config) -> Path:
    """Processor files + synthetic tokenizer of the tiny preset."""
    out = tmp_path_factory.mktemp("synthetic")
    write_processor_files(out, tiny_config, seed=0)
    write_synthetic_tokenizer(out, tiny_config)
    return out


@pytest.fixture(scope="session")
def processor_files(synthetic_dir) -> dict:
    """The three JSON values, for tests that edit them before parsing."""
    return {
        name: json.loads((synthetic_dir / f"{name}.json").read_text())
        for name in ("processor_config", "statistics", "embodiment_id")
    }


@pytest.fixture
def make_spec(processor_files):
    """Build a ProcessorSpec after an optional edit of deep copies of the three files."""

    def make(edit=None):
        files = copy.deepcopy(processor_files)
        if edit is not None:
            edit(files["processor_config"]["processor_kwargs"], files["statistics"], files["embodiment_id"])
        return parse_processor_spec(files["processor_config"], files["statistics"], files["embodiment_id"], "test")

    return make


def random_state(spec, batch: int, rng: np.random.Generator, inside: bool = True) -> dict[str, np.ndarray]:
    """Raw state inside each key's statistics (rot6d/rotvec keys get valid poses)."""
    out = {}
    for key in spec.state_keys:
        p = spec.state_norm[key]
        lo, hi = p.min, p.max
        if not inside:
            lo, hi = lo - (hi - lo), hi + (hi - lo)
        out[key] = rng.uniform(lo, hi, size=(batch, 1, p.dim)).astype(np.float32)
    return out
