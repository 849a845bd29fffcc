"""``gr00t-trt serve`` as a process (ready, a request, a log line per request, SIGTERM → clean exit 0) and
SIGINT handling of the serving loop in the main thread."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import zmq
from conftest import EMBODIMENT, RawClient

from gr00t_trt.client import PolicyClient
from gr00t_trt.serve.server import PolicyServer, ServerOptions, _stop_on_signals, is_loopback


def free_port() -> int:
    with zmq.Context() as ctx:
        sock = ctx.socket(zmq.REP)
        port = sock.bind_to_random_port("tcp://127.0.0.1")
        sock.close(linger=0)
    return port


def wait_until_served(client: PolicyClient, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early: {proc.communicate()[1]}")
        if client.ping():
            return
    raise AssertionError("server did not answer ping in time")


def test_serve_command_answers_logs_and_stops_on_sigterm(tiny_export, observation, reference_policy):
    port = free_port()
    env = {**os.environ, "GR00T_TRT_API_TOKEN": "tok"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gr00t_trt.cli", "serve", str(tiny_export), "--backend", "ort",
         "--embodiment", EMBODIMENT, "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        with PolicyClient("127.0.0.1", port, timeout_ms=1000, api_token="tok") as client:
            wait_until_served(client, proc)
            client.timeout_ms = 30000
            client._open_socket()
            action, info = client.get_action(observation, {"seed": 9})
        want = reference_policy.predict(observation, embodiment=EMBODIMENT, seed=9)
        for key in want:
            np.testing.assert_array_equal(action[key], want[key])
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert f"tcp://127.0.0.1:{port}" in stderr
    assert "get_action ok" in stderr and " ms (" in stderr
    assert "received SIGTERM" in stderr and "server stopped" in stderr


def test_sigint_stops_the_loop_after_the_current_request(served_policy, caplog):
    server = PolicyServer(served_policy, ServerOptions(port=0))
    port = server.port

    def poke():
        client = RawClient(port, token=None)
        try:
            assert client.call("ping", with_data=False)["status"] == "ok"
        finally:
            client.close()
        os.kill(os.getpid(), signal.SIGINT)

    previous = signal.getsignal(signal.SIGINT)
    helper = threading.Thread(target=poke)
    with caplog.at_level(logging.INFO, logger="gr00t_trt.serve"):
        try:
            with _stop_on_signals(server):
                helper.start()
                server.serve(poll_ms=20)
        finally:
            helper.join(timeout=10)
            server.close()
    assert server.stopped
    assert signal.getsignal(signal.SIGINT) is previous  # handlers restored
    assert any("received SIGINT" in r.message for r in caplog.records)
    assert any(r.message.startswith("ping ok") for r in caplog.records)


def test_loopback_detection():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("*") and not is_loopback("192.168.1.10")


def test_wide_binding_without_token_warns(served_policy, caplog, monkeypatch):
    # tests stay on loopback: pretend 127.0.0.1 is a wide interface to reach the warning
    monkeypatch.setattr("gr00t_trt.serve.core.is_loopback", lambda host: False)
    with caplog.at_level(logging.WARNING, logger="gr00t_trt.serve"):
        PolicyServer(served_policy, ServerOptions(port=0, api_token="t")).close()
        assert not caplog.records
        PolicyServer(served_policy, ServerOptions(port=0)).close()
    assert "without an API token" in caplog.records[-1].message


def test_serve_is_a_command_with_the_safe_defaults():
    from typer.testing import CliRunner

    from gr00t_trt.cli import app

    result = CliRunner().invoke(app, ["serve", "--help"], terminal_width=200)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for option in ("--host", "--port", "--api-token", "--allow-kill", "--embodiment", "--backend", "--max-message-mb"):
        assert option in text
    assert "127.0.0.1" in text and "5555" in text and "GR00T_TRT_API_TOKEN" in text
    assert "`ps`" in text  # the help says why the environment variable is the better way to pass the token


def test_serve_openpi_protocol_with_threads_answers_and_stops_on_sigterm(tiny_export, observation, reference_policy):
    """``--protocol openpi --threads 1``: /healthz, then openpi frames with the token as Api-Key, then SIGTERM."""
    import http.client

    import pytest

    pytest.importorskip("websockets")
    from gr00t_trt.serve.openpi_client import OpenpiClient

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gr00t_trt.cli", "serve", str(tiny_export), "--backend", "ort", "--protocol", "openpi",
         "--embodiment", EMBODIMENT, "--port", str(port), "--threads", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "GR00T_TRT_API_TOKEN": "tok"},
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, f"server exited early: {proc.communicate()[1]}"
            assert time.monotonic() < deadline, "the openpi server did not answer /healthz in time"
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.2)
        with OpenpiClient("127.0.0.1", port, api_key="tok", timeout_s=60) as client:
            action, info = client.get_action(observation, {"seed": 9})
        want = reference_policy.predict(observation, embodiment=EMBODIMENT, seed=9)
        for key in want:
            np.testing.assert_array_equal(action[key], want[key])
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert f"ws://127.0.0.1:{port}" in stderr and "openpi protocol" in stderr
    assert "infer ok" in stderr and "received SIGTERM" in stderr and "server stopped" in stderr


def test_serve_refuses_an_unknown_protocol(tiny_export):
    result = subprocess.run([sys.executable, "-m", "gr00t_trt.cli", "serve", str(tiny_export), "--protocol", "grpc"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "unknown --protocol 'grpc' — expected one of: zmq, openpi" in result.stdout + result.stderr
