"""Fixtures of the bench tests: the tiny export loaded once on ONNX Runtime, and one short benchmark."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_policy(tiny_export):
    from gr00t_trt.runtime.policy import Policy

    policy = Policy.load(tiny_export, backend="ort")
    yield policy
    policy.close()


@pytest.fixture(scope="session")
def tiny_observation(tiny_policy):
    from gr00t_trt.processing.observations import synthetic_observation

    tag = sorted(tiny_policy.manifest.embodiments)[0]
    obs = synthetic_observation(tiny_policy.preprocessor.spec, tag, image_sizes=tiny_policy.manifest.image_sizes)
    return tag, obs


@pytest.fixture(scope="session")
def tiny_report(tiny_policy, tiny_observation):
    """A short benchmark on the tiny export, with the Thor roofline attached (measured ÷ floor)."""
    from gr00t_trt.bench.runner import run_benchmark

    tag, obs = tiny_observation
    return run_benchmark(tiny_policy, obs, iters=6, warmup=1, embodiment=tag, device="thor")
