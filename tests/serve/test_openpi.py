"""``serve --protocol openpi``: openpi's websocket policy protocol over the same serving core as ZeroMQ.

The frames are checked with a raw client written from openpi-client's protocol (plain websockets + msgpack,
independent of gr00t_trt.serve); the real ``openpi-client`` is used as well when it is importable (it pins
numpy<2, so it is not in the dev extra)."""

from __future__ import annotations

import http.client
import threading

import msgpack
import numpy as np
import pytest
from conftest import EMBODIMENT, LIMIT, TOKEN

pytest.importorskip("websockets")
from websockets.exceptions import InvalidStatus  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from gr00t_trt.serve.openpi_client import OpenpiClient  # noqa: E402


# ------------------------------------------------------------------------------------------ raw client
def raw_pack(obj) -> bytes:
    def hook(o):
        if isinstance(o, np.ndarray):
            return {b"__ndarray__": True, b"data": o.tobytes(), b"dtype": o.dtype.str, b"shape": o.shape}
        raise TypeError(type(o))

    return msgpack.packb(obj, default=hook)


def raw_unpack(data: bytes):
    def hook(o):
        if b"__ndarray__" in o:
            return np.ndarray(buffer=o[b"data"], dtype=np.dtype(o[b"dtype"]), shape=o[b"shape"])
        return o

    return msgpack.unpackb(data, object_hook=hook)


class RawOpenpi:
    """openpi's WebsocketClientPolicy in a few lines: connect with the Api-Key header, read the metadata."""

    def __init__(self, port: int, api_key: str | None = TOKEN):
        headers = {"Authorization": f"Api-Key {api_key}"} if api_key else None
        self.ws = connect(f"ws://127.0.0.1:{port}", compression=None, max_size=None, additional_headers=headers,
                          open_timeout=10).__enter__()
        self.metadata = raw_unpack(self.ws.recv(timeout=10))

    def send(self, frame) -> bytes | str:
        self.ws.send(frame)
        return self.ws.recv(timeout=30)

    def infer(self, obs: dict):
        reply = self.send(raw_pack(obs))
        assert isinstance(reply, bytes), reply
        return raw_unpack(reply)

    def close(self):
        self.ws.close()


@pytest.fixture
def raw_openpi(openpi_served):
    client = RawOpenpi(openpi_served.port)
    yield client
    client.close()


def action_keys(reply: dict) -> dict:
    return {k: v for k, v in reply.items() if k not in ("server_timing", "policy_timing", "info")}


def assert_same_actions(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for key in want:
        assert got[key].dtype == want[key].dtype and got[key].shape == want[key].shape, key
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


# ------------------------------------------------------------------------------------------ the protocol
def test_metadata_on_connect_then_actions_with_server_timing(raw_openpi, observation, reference_policy, served_policy):
    meta = raw_openpi.metadata
    assert meta["embodiments"] == sorted(served_policy.manifest.embodiments)
    assert meta["default_embodiment"] == EMBODIMENT and EMBODIMENT in meta["io"]
    first = raw_openpi.infer(dict(observation, options={"seed": 7}))
    assert_same_actions(action_keys(first), reference_policy.predict(observation, embodiment=EMBODIMENT, seed=7))
    assert first["server_timing"]["infer_ms"] > 0 and "prev_total_ms" not in first["server_timing"]
    assert first["info"]["export"]["fingerprint"] == served_policy.manifest.source.get("fingerprint")
    assert first["info"]["seed"] == 7 and first["policy_timing"]["total"] > 0
    second = raw_openpi.infer(observation)  # no options: fresh noise, still a full answer
    assert second["server_timing"]["prev_total_ms"] >= first["server_timing"]["infer_ms"]
    assert set(action_keys(second)) == set(action_keys(first))


def test_openpi_client_class_gives_the_one_api(openpi_served, observation, reference_policy):
    with OpenpiClient("127.0.0.1", openpi_served.port, api_key=TOKEN) as client:
        action, info = client.get_action(observation, {"seed": 12})
        assert client.metadata["default_embodiment"] == EMBODIMENT
    assert_same_actions(action, reference_policy.predict(observation, embodiment=EMBODIMENT, seed=12))
    assert info["embodiment"] == EMBODIMENT and info["server_timing"]["infer_ms"] > 0


def test_prefix_options_travel_over_openpi(openpi_served, observation, reference_policy):
    first, _ = reference_policy.get_action(observation, {"embodiment": EMBODIMENT, "seed": 1})
    options = {"seed": 12, "prefix": {k: v[:, :5] for k, v in first.items()}, "rtc_frozen_steps": 1}
    with OpenpiClient("127.0.0.1", openpi_served.port, api_key=TOKEN) as client:
        action, info = client.get_action(observation, options)
    want, _ = reference_policy.get_action(observation, dict(options, embodiment=EMBODIMENT))
    assert_same_actions(action, want)
    assert info["prefix"] == {"overlap": 5, "frozen": 1, "ramp_rate": 5.0}


def test_real_openpi_client_gets_the_in_process_actions(openpi_served, observation, reference_policy):
    websocket_client_policy = pytest.importorskip("openpi_client.websocket_client_policy")
    client = websocket_client_policy.WebsocketClientPolicy(host="127.0.0.1", port=openpi_served.port, api_key=TOKEN)
    try:
        reply = client.infer(dict(observation, options={"seed": 5}))
        assert client.get_server_metadata()["default_embodiment"] == EMBODIMENT
    finally:
        client._ws.close()
    assert_same_actions(action_keys(reply), reference_policy.predict(observation, embodiment=EMBODIMENT, seed=5))


@pytest.mark.parametrize("key", [None, "wrong-token", f"{TOKEN}x"])
def test_handshake_without_the_api_key_is_refused(openpi_served, key):
    with pytest.raises(InvalidStatus) as caught:
        RawOpenpi(openpi_served.port, api_key=key)
    assert caught.value.response.status_code == 401
    assert b"invalid or missing API token" in caught.value.response.body
    with pytest.raises(Exception, match="401"):
        OpenpiClient("127.0.0.1", openpi_served.port, api_key=key)


def test_healthz_answers_without_a_token(openpi_served):
    conn = http.client.HTTPConnection("127.0.0.1", openpi_served.port, timeout=10)
    conn.request("GET", "/healthz")
    response = conn.getresponse()
    assert response.status == 200 and response.read() == b"OK\n"
    conn.close()


def test_malformed_frames_are_answered_and_the_connection_survives(raw_openpi, observation, reference_policy):
    good = dict(observation, options={"seed": 1})
    big = raw_pack({"video": {"x": np.zeros(LIMIT + 16, np.uint8)}})
    cases = {
        "text frame": ("hello", "expected a binary msgpack frame"),
        "not msgpack": (b"\xc1\xc1\xc1", "malformed message"),
        "not a map": (raw_pack([1, 2, 3]), "expected the observation map"),
        "empty map": (raw_pack({}), "expected the observation to be a non-empty map"),
        "object dtype": (msgpack.packb({"video": {b"__ndarray__": True, b"data": b"", b"dtype": "|O", b"shape": [0]}}),
                         "dtype object is refused"),
        "short data": (msgpack.packb({"video": {b"__ndarray__": True, b"data": b"\0" * 3, b"dtype": "<f4", b"shape": [2]}}),
                       "needs 8 bytes, got 3"),
        "negative shape": (msgpack.packb({"v": {b"__ndarray__": True, b"data": b"", b"dtype": "<f4", b"shape": [-1]}}),
                           "non-negative ints"),
        "bad options": (raw_pack(dict(observation, options={"seed": -3})), "bad option 'seed'"),
        "wrong state width": (raw_pack({**observation, "state": {k: v[..., :1] for k, v in observation["state"].items()}}),
                              "width 1"),
        "too large": (big, "message too large"),
    }
    for name, (frame, fragment) in cases.items():
        reply = raw_openpi.send(frame)
        assert isinstance(reply, str), (name, reply)
        assert fragment in reply, (name, reply)
    reply = raw_openpi.infer(good)  # the same connection still serves
    assert_same_actions(action_keys(reply), reference_policy.predict(observation, embodiment=EMBODIMENT, seed=1))


def test_connections_beyond_the_limit_are_turned_away(openpi_served):
    clients = [RawOpenpi(openpi_served.port) for _ in range(openpi_served.options.max_clients)]
    try:
        with pytest.raises(Exception, match="1013|too many clients"):
            extra = RawOpenpi(openpi_served.port)
            extra.close()
    finally:
        for client in clients:
            client.close()
    for _ in range(50):  # closed connections free their slots
        try:
            RawOpenpi(openpi_served.port).close()
            break
        except Exception:
            threading.Event().wait(0.05)
    else:
        pytest.fail("the server did not free the slots of closed connections")
