"""ChunkRunner over the three things that answer get_action(obs, options) -> (action, info): an in-process
Policy, a ZeroMQ PolicyClient and an OpenpiClient — the same call, the same actions."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import EMBODIMENT, TOKEN

from gr00t_trt.robot import ChunkRunner


def make(kind: str, served, openpi_served, served_policy):
    if kind == "policy":
        return served_policy
    if kind == "zmq":
        from gr00t_trt.serve.client import PolicyClient

        return PolicyClient("127.0.0.1", served.port, api_token=TOKEN, timeout_ms=60000)
    from gr00t_trt.serve.openpi_client import OpenpiClient

    return OpenpiClient("127.0.0.1", openpi_served.port, api_key=TOKEN, timeout_s=60)


@pytest.mark.parametrize("kind", ["policy", "zmq", "openpi"])
def test_runner_steps_through_the_chunk_in_process_and_remote(kind, served, openpi_served, served_policy,
                                                              reference_policy, observation):
    chunk = reference_policy.predict(observation, embodiment=EMBODIMENT, seed=3)
    horizon = next(iter(chunk.values())).shape[1]
    policy = make(kind, served, openpi_served, served_policy)
    try:
        with ChunkRunner(policy, threshold=0.5, options={"seed": 3, "embodiment": EMBODIMENT}) as runner:
            steps = [runner.step(observation) for _ in range(horizon // 2)]  # the first chunk's first half
        assert runner.records[0].discontinuity is None and runner.records[0].latency_ms > 0
        assert runner.last_info["embodiment"] == EMBODIMENT
    finally:
        if kind != "policy":
            policy.close()
    for t, action in enumerate(steps):
        assert set(action) == set(chunk)
        for key, value in chunk.items():
            np.testing.assert_array_equal(action[key], value[:, t], err_msg=f"{kind} tick {t} {key}")
