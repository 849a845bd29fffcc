"""Several clients at once on loopback, both protocols: zero errors, p50/p99 reported, every client answered
for its own observation, and the policy lock never held while a reply is on the network."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from conftest import EMBODIMENT, TOKEN

from gr00t_trt.serve.load import run_load

CLIENTS, REQUESTS = 4, 3


@pytest.fixture(scope="module")
def workload(served_policy, reference_policy):
    """Per client a different observation (its own camera frames and state) and its own seeds, and the
    in-process answer each request must get."""
    from gr00t_trt.processing.observations import synthetic_observation

    requests, want = [], {}
    for i in range(CLIENTS):
        obs = synthetic_observation(served_policy.preprocessor.spec, EMBODIMENT, seed=100 + i,
                                    image_sizes=served_policy.manifest.image_sizes)
        requests.append([(obs, {"seed": 10 * i + j}) for j in range(REQUESTS)])
        for j in range(REQUESTS):
            want[(i, j)] = reference_policy.predict(obs, embodiment=EMBODIMENT, seed=10 * i + j)
    return requests, want


def connector(protocol: str, served, openpi_served):
    if protocol == "zmq":
        from gr00t_trt.serve.client import PolicyClient

        return lambda: PolicyClient("127.0.0.1", served.port, api_token=TOKEN, timeout_ms=60000)
    from gr00t_trt.serve.openpi_client import OpenpiClient

    return lambda: OpenpiClient("127.0.0.1", openpi_served.port, api_key=TOKEN, timeout_s=60)


@pytest.mark.parametrize("protocol", ["zmq", "openpi"])
def test_four_clients_at_once_each_get_their_own_answers(protocol, served, openpi_served, workload):
    requests, want = workload
    report = run_load(connector(protocol, served, openpi_served), requests)
    summary = report.summary()
    print(f"\n{protocol}: {summary}")
    assert report.errors == [] and summary["errors"] == 0
    assert len(report.latencies_ms) == CLIENTS * REQUESTS and summary["p99_ms"] >= summary["p50_ms"] > 0
    for key, expected in want.items():
        got = report.answers[key]
        assert set(got) == set(expected), key
        for name in expected:
            np.testing.assert_array_equal(got[name], expected[name], err_msg=f"client {key[0]} request {key[1]} {name}")


def test_the_load_test_is_bounded():
    from gr00t_trt.base.errors import ServeError

    with pytest.raises(ServeError, match=r"1\.\.32 clients, got 33"):
        run_load(lambda: None, [[]] * 33)


# ------------------------------------------------------------------------------------------ no lock across I/O
class _RecordingSocket:
    """A ZeroMQ socket stand-in that notes whether the serving core's lock is held at each send."""

    def __init__(self, socket, core, seen: list):
        self._socket, self._core, self._seen = socket, core, seen

    def send(self, *args, **kwargs):
        self._seen.append(self._core.lock.locked())
        return self._socket.send(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._socket, name)


def test_zmq_server_sends_replies_outside_the_policy_lock(served_policy, observation):
    from conftest import stop_server

    from gr00t_trt.serve.client import PolicyClient
    from gr00t_trt.serve.server import PolicyServer, ServerOptions

    server = PolicyServer(served_policy, ServerOptions(host="127.0.0.1", port=0, embodiment=EMBODIMENT))
    seen: list[bool] = []
    server._socket = _RecordingSocket(server._socket, server.core, seen)
    thread = threading.Thread(target=server.serve, kwargs={"poll_ms": 20}, daemon=True)
    thread.start()
    try:
        with PolicyClient("127.0.0.1", server.port, timeout_ms=60000) as client:
            client.get_action(observation, {"seed": 1})
            client.get_action(observation, {"seed": 2})
    finally:
        server._socket = server._socket._socket
        stop_server(server, thread)
    assert seen == [False, False]


def test_openpi_server_sends_replies_outside_the_policy_lock(openpi_served, observation, monkeypatch):
    from websockets.sync.server import ServerConnection

    from gr00t_trt.serve.openpi_client import OpenpiClient

    seen: list[bool] = []
    send = ServerConnection.send

    def recording_send(self, message, *args, **kwargs):
        seen.append(openpi_served.core.lock.locked())
        return send(self, message, *args, **kwargs)

    monkeypatch.setattr(ServerConnection, "send", recording_send)
    with OpenpiClient("127.0.0.1", openpi_served.port, api_key=TOKEN) as client:
        client.get_action(observation, {"seed": 1})
        client.get_action(observation, {"seed": 2})
    assert seen == [False, False, False]  # the metadata, then two replies
