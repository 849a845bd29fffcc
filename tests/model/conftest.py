"""Fixtures of the model tests: the tiny config and an in-memory tiny model with synthetic weights."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_config():
    from gr00t_trt.families.n16.presets import preset_config

    return preset_config("tiny")


@pytest.fixture(scope="session")
def tiny_model(tiny_config):
    """fp32 Gr00tN1d6 with the same synthetic values ``make_checkpoint`` writes (seed 0)."""
    from gr00t_trt.families.n16.synthetic import synthetic_model

    return synthetic_model(tiny_config, seed=0)
