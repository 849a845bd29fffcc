"""Fixtures of the server tests: one Policy on the session's tiny export, served on 127.0.0.1 from a thread,
and a raw client written the way Isaac-GR00T's is (plain zmq + msgpack + np.save), independent of
gr00t_trt.serve so the wire format is checked against the protocol, not against itself."""

from __future__ import annotations

import io
import threading

import msgpack
import numpy as np
import pytest
import zmq

TOKEN = "s3cret-token"
EMBODIMENT = "unitree_g1"
LIMIT = 4 << 20  # the served test server's message limit (bytes)


# ------------------------------------------------------------------------------------------ raw client
def raw_encode_hook(obj):
    if isinstance(obj, np.ndarray):
        out = io.BytesIO()
        np.save(out, obj, allow_pickle=False)
        return {"__ndarray_class__": True, "as_npy": out.getvalue()}
    return obj


def raw_decode_hook(obj):
    if "__ndarray_class__" in obj:
        return np.load(io.BytesIO(obj["as_npy"]), allow_pickle=False)
    if "__ModalityConfig_class__" in obj:
        return {"ModalityConfig": obj["as_json"]}
    return obj


class RawClient:
    """Isaac-GR00T's client protocol in a dozen lines, with a receive timeout so no test can hang."""

    def __init__(self, port: int, token: str | None = TOKEN, timeout_ms: int = 20000):
        self.context = zmq.Context()
        self.port, self.token, self.timeout_ms = port, token, timeout_ms
        self.connect()

    def connect(self):
        self.socket = self.context.socket(zmq.REQ)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.RCVTIMEO, self.timeout_ms)
        self.socket.connect(f"tcp://127.0.0.1:{self.port}")

    def send_bytes(self, message: bytes):
        self.socket.send(message)
        return msgpack.unpackb(self.socket.recv(), object_hook=raw_decode_hook)

    def call(self, endpoint: str | None, data=None, *, with_data: bool = True, token: str | None = "default"):
        request = {} if endpoint is None else {"endpoint": endpoint}
        if with_data:
            request["data"] = data
        token = self.token if token == "default" else token
        if token:
            request["api_token"] = token
        return self.send_bytes(msgpack.packb(request, default=raw_encode_hook))

    def close(self):
        self.socket.close(linger=0)
        self.context.term()


# ------------------------------------------------------------------------------------------ served policy
class Served:
    def __init__(self, policy, server, thread):
        self.policy, self.server, self.thread = policy, server, thread

    @property
    def port(self) -> int:
        return self.server.port

    def raw(self, **kwargs) -> RawClient:
        return RawClient(self.port, **kwargs)


def start_server(policy, **options):
    from gr00t_trt.serve.server import PolicyServer, ServerOptions

    server = PolicyServer(policy, ServerOptions(host="127.0.0.1", port=0, **options))
    thread = threading.Thread(target=server.serve, kwargs={"poll_ms": 20}, daemon=True)
    thread.start()
    return server, thread


def stop_server(server, thread):
    server.stop()
    thread.join(timeout=10)
    assert not thread.is_alive(), "server thread did not stop"
    server.close()


@pytest.fixture(scope="session")
def served_policy(tiny_export):
    from gr00t_trt.runtime.policy import Policy

    policy = Policy.load(tiny_export, backend="ort")
    yield policy
    policy.close()


@pytest.fixture(scope="session")
def reference_policy(tiny_export):
    """A second, in-process Policy on the same export: what served actions are compared with."""
    from gr00t_trt.runtime.policy import Policy

    policy = Policy.load(tiny_export, backend="ort")
    yield policy
    policy.close()


@pytest.fixture(scope="session")
def served(served_policy):
    """The tiny export served with a token, kill disabled, a 4 MiB message limit and a default embodiment."""
    server, thread = start_server(served_policy, api_token=TOKEN, max_message_bytes=LIMIT, embodiment=EMBODIMENT)
    yield Served(served_policy, server, thread)
    stop_server(server, thread)


@pytest.fixture
def raw(served):
    client = served.raw()
    yield client
    client.close()


@pytest.fixture(scope="session")
def observation(served_policy):
    from gr00t_trt.processing.observations import synthetic_observation

    return synthetic_observation(served_policy.preprocessor.spec, EMBODIMENT, seed=3,
                                 image_sizes=served_policy.manifest.image_sizes)


@pytest.fixture(scope="session")
def openpi_served(served_policy):
    """The tiny export behind openpi's websocket protocol: token, 4 MiB limit, default embodiment, 6 clients."""
    pytest.importorskip("websockets")
    from gr00t_trt.serve.core import ServerOptions
    from gr00t_trt.serve.openpi import OpenpiServer

    server = OpenpiServer(served_policy, ServerOptions(host="127.0.0.1", port=0, api_token=TOKEN, max_message_bytes=LIMIT,
                                                       embodiment=EMBODIMENT, max_clients=6))
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    yield server
    server.stop()
    thread.join(timeout=10)
    assert not thread.is_alive(), "openpi server thread did not stop"
    server.close()
