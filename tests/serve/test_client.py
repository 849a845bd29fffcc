"""The light client: same answers as the raw protocol, errors raised, bounded waits, and an import that
pulls in neither the runtime nor torch/onnxruntime."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import msgpack
import numpy as np
import pytest
import zmq
from conftest import EMBODIMENT, TOKEN

from gr00t_trt.base.errors import ServeError
from gr00t_trt.client import ModalityConfig, PolicyClient


@pytest.fixture
def client(served):
    with PolicyClient("127.0.0.1", served.port, timeout_ms=20000, api_token=TOKEN) as c:
        yield c


def test_get_action_equals_in_process_policy(client, observation, reference_policy):
    action, info = client.get_action(observation, {"seed": 4})
    want = reference_policy.predict(observation, embodiment=EMBODIMENT, seed=4)
    assert set(action) == set(want)
    for key in want:
        np.testing.assert_array_equal(action[key], want[key])
    assert info["backend"] == "ort" and info["seed"] == 4


def test_ping_reset_and_modality_config(client, served):
    assert client.ping() is True
    assert client.server_info()["export"]["fingerprint"] == served.policy.manifest.source["fingerprint"]
    assert client.reset() == {}
    configs = client.get_modality_config()
    assert isinstance(configs["action"], ModalityConfig)
    spec = served.policy.preprocessor.spec.embodiment(EMBODIMENT)
    assert configs["action"].horizon == spec.action_horizon
    assert configs["state"].modality_keys == list(spec.state_keys)


def test_modality_config_is_the_in_process_call(client, served_policy):
    """The one API: client.modality_config(tag) == policy.modality_config(tag), for another embodiment too."""
    for tag in sorted(served_policy.manifest.embodiments):
        assert client.modality_config(tag) == served_policy.modality_config(tag)
    assert client.modality_config() == served_policy.modality_config(EMBODIMENT)


def test_server_errors_are_raised_as_one_line(served, observation):
    with PolicyClient("127.0.0.1", served.port, api_token="wrong") as bad:
        with pytest.raises(ServeError, match="server error: Unauthorized"):
            bad.get_action(observation)
        assert bad.ping() is False  # an error reply is "not usable", like a missing server
    with PolicyClient("127.0.0.1", served.port, api_token=TOKEN) as good:
        with pytest.raises(ServeError, match="server error: kill is disabled"):
            good.kill_server()
        assert good.ping() is True


def test_no_server_means_a_bounded_wait_and_a_clear_error():
    with zmq.Context() as ctx:  # reserve a free port, then leave it unanswered
        sock = ctx.socket(zmq.REP)
        port = sock.bind_to_random_port("tcp://127.0.0.1")
        sock.close(linger=0)
    with PolicyClient("127.0.0.1", port, timeout_ms=300) as client:
        with pytest.raises(ServeError, match=r"no reply from tcp://127.0.0.1:\d+ to 'ping' within 300 ms"):
            client.call_endpoint("ping", requires_input=False)
        assert client.ping() is False  # the socket was rebuilt: a second call works the same way


def test_light_client_imports_neither_runtime_nor_heavy_modules():
    code = textwrap.dedent(
        """
        import sys
        for name in ("torch", "transformers", "onnxruntime", "onnx", "cv2", "PIL", "tokenizers", "typer", "rich"):
            sys.modules[name] = None
        from gr00t_trt.client import PolicyClient
        from gr00t_trt.serve import wire
        loaded = sorted(m for m in sys.modules if m.startswith("gr00t_trt"))
        assert not [m for m in loaded if m.startswith(("gr00t_trt.runtime", "gr00t_trt.processing", "gr00t_trt.model"))], loaded
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


# ------------------------------------------------------------------------------------------ a hostile server
class FakeServer:
    """A REP socket on loopback answering each request with the next list of frames given (issue 17.4)."""

    def __init__(self, replies: list[list[bytes]]):
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.REP)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.port = self.socket.bind_to_random_port("tcp://127.0.0.1")
        self.replies = list(replies)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        for frames in self.replies:
            if not self.socket.poll(20000):
                return
            self.socket.recv_multipart()
            self.socket.send_multipart(frames)

    def close(self):
        self.thread.join(timeout=20)
        self.socket.close(linger=0)
        self.context.term()


PING_OK = [msgpack.packb({"status": "ok"})]


@pytest.mark.parametrize("bad_reply, match", [
    ([msgpack.packb({"status": "ok"}), b"second frame"], "expected one frame, got more"),
    ([b"\xdd" + (4 << 20).to_bytes(4, "big") + b"\x90" * (4 << 20)], "more than 10,000 values"),
    ([b"\xc1 not msgpack"], "malformed message"),
])
def test_a_bad_reply_raises_the_clients_error_and_the_next_call_works(bad_reply, match):
    server = FakeServer([bad_reply, PING_OK])
    try:
        with PolicyClient("127.0.0.1", server.port, timeout_ms=2000) as client:
            start = time.perf_counter()
            with pytest.raises(ServeError, match=f"bad reply from tcp://127.0.0.1:{server.port} to 'ping': .*{match}"):
                client.call_endpoint("ping", requires_input=False)
            assert time.perf_counter() - start < 2.0  # the timeout covers decoding
            assert client.call_endpoint("ping", requires_input=False) == {"status": "ok"}  # socket rebuilt
    finally:
        server.close()


def test_a_reply_over_the_size_limit_is_dropped_unread():
    server = FakeServer([[msgpack.packb({"blob": b"\0" * (2 << 20)})]])
    try:
        with PolicyClient("127.0.0.1", server.port, timeout_ms=1500, max_reply_bytes=1 << 20) as client:
            with pytest.raises(ServeError, match=r"no reply .* within 1500 ms \(or one over 1,048,576 bytes"):
                client.call_endpoint("ping", requires_input=False)
    finally:
        server.close()


def test_the_client_talks_ipv6_loopback():
    with zmq.Context() as ctx:
        sock = ctx.socket(zmq.REP)
        sock.setsockopt(zmq.IPV6, 1)
        try:
            port = sock.bind_to_random_port("tcp://[::1]")
        except zmq.ZMQError:
            sock.close(linger=0)
            pytest.skip("no IPv6 loopback on this machine")

        def answer():
            if sock.poll(20000):
                sock.recv()
                sock.send(PING_OK[0])

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        with PolicyClient("::1", port, timeout_ms=20000) as client:
            assert client.call_endpoint("ping", requires_input=False) == {"status": "ok"}
        thread.join(timeout=20)
        sock.close(linger=0)


def test_prefix_options_travel_to_the_server(client, observation, reference_policy):
    """Prefix conditioning over the wire: the prefix arrays and Isaac-GR00T's rtc_* options reach the policy
    (same actions as in-process) and the info echoes the plan."""
    first, _ = reference_policy.get_action(observation, {"embodiment": EMBODIMENT, "seed": 1})
    options = {"seed": 4, "prefix": {k: v[:, :6] for k, v in first.items()}, "rtc_frozen_steps": 2,
               "rtc_ramp_rate": 3.0}
    action, info = client.get_action(observation, options)
    want, want_info = reference_policy.get_action(observation, dict(options, embodiment=EMBODIMENT))
    for key in want:
        np.testing.assert_array_equal(action[key], want[key])
    assert info["prefix"] == want_info["prefix"] == {"overlap": 6, "frozen": 2, "ramp_rate": 3.0}
    assert "ignored_options" not in info
    with pytest.raises(ServeError, match="rtc_frozen_steps must be an integer in 0..6"):
        client.get_action(observation, dict(options, rtc_frozen_steps=7))
