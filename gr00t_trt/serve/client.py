"""A light policy client for robot processes: numpy, msgpack and pyzmq only (no torch, no onnxruntime).

Same API shape as Isaac-GR00T's ``PolicyClient`` — ``get_action(observation, options=None) -> (action,
info)``, ``ping()``, ``reset()``, ``get_modality_config()``, ``kill_server()`` — and it talks to
``gr00t-trt serve`` or to Isaac-GR00T's own server alike. Unlike the original it trusts no server: a
request without a reply within ``timeout_ms`` raises, a reply larger than ``max_reply_bytes`` is dropped
by ZeroMQ unread, decoding is bounded in values, nesting and time (the timeout covers it), and after any
failure the socket is rebuilt so the next call starts clean; every failure is a ``ServeError``.
"""

from __future__ import annotations

import time
from typing import Any

from ..base.errors import ServeError, require
from . import wire

DEFAULT_MAX_REPLY_BYTES = 64 << 20  # an action chunk is kilobytes; a modality config less


class PolicyClient:
    """Talks to a policy server over ZeroMQ REQ. Not thread-safe: one client per thread."""

    def __init__(self, host: str = "localhost", port: int = 5555, timeout_ms: int = 15000,
                 api_token: str | None = None, max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
                 max_objects: int = wire.MAX_OBJECTS) -> None:
        self._zmq = require("zmq", "pyzmq", "The policy client")
        self.host, self.port, self.timeout_ms, self.api_token = host, port, timeout_ms, api_token
        self.max_reply_bytes, self.max_objects = max_reply_bytes, max_objects
        self._context = self._zmq.Context()
        self._socket = None
        self._open_socket()

    def _open_socket(self) -> None:
        if self._socket is not None:
            self._socket.close(linger=0)
        zmq = self._zmq
        self._socket = self._context.socket(zmq.REQ)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.RCVTIMEO, self.timeout_ms)
        self._socket.setsockopt(zmq.SNDTIMEO, self.timeout_ms)
        self._socket.setsockopt(zmq.MAXMSGSIZE, self.max_reply_bytes)
        wire.configure_ipv6(self._socket, self.host)
        self._socket.connect(wire.tcp_address(self.host, self.port))

    # ------------------------------------------------------------------ the protocol
    def call_endpoint(self, endpoint: str, data: dict | None = None, requires_input: bool = True) -> Any:
        """Send one request and return the decoded reply; an ``{"error": ...}`` reply raises ServeError."""
        message = wire.encode(wire.request(endpoint, data, self.api_token, with_data=requires_input))
        deadline = time.monotonic() + self.timeout_ms / 1000
        where = wire.tcp_address(self.host, self.port)
        try:
            self._socket.send(message)
            reply = self._socket.recv()
            if self._socket.getsockopt(self._zmq.RCVMORE):
                raise ServeError("malformed reply — expected one frame, got more")
            response = wire.decode(reply, max_objects=self.max_objects, deadline=deadline)
        except self._zmq.Again:
            self._open_socket()  # a REQ socket that missed its reply cannot send again
            raise ServeError(f"no reply from {where} to {endpoint!r} within {self.timeout_ms} ms (or one over "
                             f"{self.max_reply_bytes:,} bytes, dropped) — is the server running (gr00t-trt serve)?"
                             ) from None
        except self._zmq.ZMQError as exc:
            self._open_socket()
            raise ServeError(f"socket error talking to {where} ({endpoint!r}): {exc}") from None
        except ServeError as exc:
            self._open_socket()  # whatever the server sent, the next call starts on a fresh socket
            raise ServeError(f"bad reply from {where} to {endpoint!r}: {exc}") from None
        if isinstance(response, dict) and "error" in response:
            raise ServeError(f"server error: {response['error']}")
        return response

    def ping(self) -> bool:
        """True when the server answers."""
        try:
            self.call_endpoint("ping", requires_input=False)
            return True
        except ServeError:
            return False

    def server_info(self) -> dict[str, Any]:
        """The ping reply: export identity, backend, embodiments and per-key shapes (gr00t-trt servers)."""
        return self.call_endpoint("ping", requires_input=False)

    def get_action(self, observation: dict[str, Any], options: dict[str, Any] | None = None
                   ) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(action, info)``; options may carry ``seed``, ``noise`` and ``embodiment`` (gr00t-trt servers)."""
        response = self.call_endpoint("get_action", {"observation": observation, "options": options})
        if not isinstance(response, list) or len(response) != 2:
            raise ServeError(f"bad get_action reply — expected [action, info], got {type(response).__name__}")
        action, info = response
        return action, info

    def reset(self, options: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.call_endpoint("reset", {"options": options})

    def get_modality_config(self) -> dict[str, wire.ModalityConfig]:
        return self.call_endpoint("get_modality_config", requires_input=False)

    def modality_config(self, embodiment: str | None = None) -> dict[str, wire.ModalityConfig]:
        """``Policy.modality_config``'s call: one embodiment's configs (the server's default without one;
        naming one needs a gr00t-trt server)."""
        if embodiment is None:
            return self.get_modality_config()
        return self.call_endpoint("get_modality_config", {"embodiment": embodiment})

    def kill_server(self) -> None:
        """Ask the server to stop (refused unless it runs with --allow-kill)."""
        self.call_endpoint("kill", requires_input=False)

    kill = kill_server

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None
            self._context.term()

    def __enter__(self) -> PolicyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
