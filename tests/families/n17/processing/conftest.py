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


def valid_state(emb, batch: int = 1, seed: int = 0) -> dict:
    """State drawn inside the statistics' range: a valid reference pose for relative EEF actions (all-zero
    rot6d rows are refused as degenerate)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return {k: rng.uniform(emb.state_norm[k].min, emb.state_norm[k].max, (batch, 1, emb.state_norm[k].dim))
            .astype(np.float32) for k in emb.state_keys}  # fmt: skip


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


def build_two_frame_spec(folder: Path):
    """A processor spec whose libero_panda embodiment sends two frames per view (delta [-15, 0], as
    DROID) and pads state to 132; built from the synthetic processor files (no N1.7 parser yet).
    Torch-free, so the no-torch test can call it too."""
    import dataclasses

    from gr00t_trt.families.n16.presets import preset_config
    from gr00t_trt.families.n16.processing.modality import load_processor_spec
    from gr00t_trt.families.n16.synthetic_processor import write_processor_files

    write_processor_files(folder, preset_config("tiny"), seed=0)
    spec = load_processor_spec(folder)
    embodiments = {
        tag: dataclasses.replace(
            emb,
            max_state_dim=132,
            video_delta_indices=(-15, 0) if tag == "libero_panda" else emb.video_delta_indices,
        )
        for tag, emb in spec.embodiments.items()
    }
    return dataclasses.replace(spec, embodiments=embodiments)


@pytest.fixture(scope="session")
def two_frame_spec(tmp_path_factory):
    return build_two_frame_spec(tmp_path_factory.mktemp("n17_processor"))
