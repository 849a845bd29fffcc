"""A ZeroMQ policy server that unmodified Isaac-GR00T clients talk to, safer than the original by default.

Same protocol as Isaac-GR00T's ``PolicyServer`` (REQ/REP, msgpack + npy, endpoints ``ping``, ``get_action``,
``reset``, ``get_modality_config``, ``kill``; a request without ``endpoint`` is ``get_action``; errors come
back as ``{"error": message}``). Differences, all on the safe side: binds loopback unless told otherwise
(and warns when binding wider without a token), compares the token in constant time, refuses oversized
messages, checks the token before parsing any array, answers every malformed request with an error and
keeps serving, ``kill`` only with ``allow_kill``, one log line per request with its latency, clean stop on
SIGINT/SIGTERM. One request is served at a time (REP socket); the policy is called under a lock anyway so
the server may share its Policy with other threads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import __version__
from ..base.errors import Gr00tTrtError, ServeError, require
from . import wire
from .core import (  # noqa: F401 - ServerOptions, is_loopback, check_observation_types: this module's API before core
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_PORT,
    WIDE_HOSTS,
    ServerOptions,
    ServingCore,
    _stop_on_signals,
    check_observation_types,
    is_loopback,
    log,
    warn_if_open,
)

ENDPOINTS = ("ping", "get_action", "reset", "get_modality_config", "kill")


class PolicyServer:
    """Serves one ``Policy`` on a ZeroMQ REP socket. ``serve()`` blocks until ``stop()`` or an allowed kill."""

    def __init__(self, policy, options: ServerOptions = ServerOptions(), core: ServingCore | None = None) -> None:
        zmq = require("zmq", "pyzmq", "The policy server")
        self.core = core or ServingCore(policy, options)
        self.policy, self.options = policy, options
        self._stop = threading.Event()
        self._zmq = zmq
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.REP)
        self._socket.setsockopt(zmq.LINGER, 0)
        # beyond twice the limit ZeroMQ drops the peer without reading the message into memory; between
        # the limit and that, the sender gets an error reply
        self._socket.setsockopt(zmq.MAXMSGSIZE, 2 * options.max_message_bytes)
        wire.configure_ipv6(self._socket, options.host)
        address = wire.tcp_address(options.host, options.port or "*")
        try:
            self._socket.bind(address)
        except zmq.ZMQError as exc:
            self.close()
            raise ServeError(f"cannot listen on {address} — {exc} — pick another --port or --host") from None
        warn_if_open(options, address)
        self._handlers: dict[str, Callable[[dict], Any]] = {
            "ping": self._ping, "get_action": self._get_action, "reset": self._reset,
            "get_modality_config": self._get_modality_config, "kill": self._kill,
        }

    # ------------------------------------------------------------------ socket lifecycle
    @property
    def endpoint(self) -> str:
        return self._socket.getsockopt_string(self._zmq.LAST_ENDPOINT)

    @property
    def port(self) -> int:
        return int(self.endpoint.rsplit(":", 1)[1])

    def serve(self, poll_ms: int = 100) -> None:
        """Answer requests until ``stop()`` (any thread, a signal handler) or an allowed ``kill``."""
        log.info("gr00t-trt %s serving %s on %s (backend %s, kill %s, token %s)", __version__,
                 self.policy.folder, self.endpoint, self.policy.pipeline.backend.name,
                 "allowed" if self.options.allow_kill else "disabled", "required" if self.options.api_token else "none")
        while not self._stop.is_set():
            if not self._socket.poll(poll_ms, self._zmq.POLLIN):
                continue
            try:
                message, extra = self._receive()
                reply = self.handle(message) if not extra else self._refuse_frames(extra, len(message))
                self._socket.send(reply)
            except self._zmq.ZMQError as exc:  # the socket is in a bad state: start over, keep serving
                log.warning("socket error (%s); reopening the socket", exc)
                self._reopen()
        log.info("server stopped")

    def _receive(self) -> tuple[bytes, int]:
        """One request's first frame and the number of further frames, which are read and dropped (a REP
        socket must take every frame of a request before it can reply)."""
        message = self._socket.recv(copy=True)
        extra = 0
        while self._socket.getsockopt(self._zmq.RCVMORE):
            self._socket.recv(copy=False)
            extra += 1
        return message, extra

    def _refuse_frames(self, extra: int, size: int) -> bytes:
        text = f"malformed request — expected one frame, got {1 + extra} — send the msgpack request as one frame"
        log.info("? error: %s (%d B in first frame)", text, size)
        return wire.encode(wire.error_reply(text))

    def _reopen(self) -> None:
        zmq = self._zmq
        endpoint = self.endpoint
        self._socket.close(linger=0)
        self._socket = self._context.socket(zmq.REP)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.MAXMSGSIZE, 2 * self.options.max_message_bytes)
        wire.configure_ipv6(self._socket, self.options.host)
        self._socket.bind(endpoint)

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def close(self) -> None:
        """Close the socket and its context (the Policy stays the caller's)."""
        self._socket.close(linger=0)
        self._context.term()

    def __enter__(self) -> PolicyServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ one request
    def handle(self, message: bytes) -> bytes:
        """The reply bytes to one request message; never raises (every failure is an error reply)."""
        start = time.perf_counter()
        seen = {"endpoint": "?"}
        try:
            result = self._dispatch(message, seen)
            reply, status = wire.encode(result), "ok"
        except Gr00tTrtError as exc:
            reply, status = wire.encode(wire.error_reply(str(exc))), f"error: {exc}"
        except Exception as exc:  # a bug must not take the server down; the client still gets an answer
            log.exception("internal error while serving %s", seen["endpoint"])
            text = f"internal server error — {type(exc).__name__}: {exc}"
            reply, status = wire.encode(wire.error_reply(text)), f"error: {text}"
        log.info("%s %s %.1f ms (%d B in, %d B out)", seen["endpoint"], status[:200],
                 (time.perf_counter() - start) * 1e3, len(message), len(reply))
        return reply

    def _dispatch(self, message: bytes, seen: dict[str, str]) -> Any:
        limit = self.options.max_message_bytes
        if len(message) > limit:
            raise ServeError(f"message too large — expected at most {limit} bytes, got {len(message)} — "
                             "send fewer or smaller images, or start the server with a larger --max-message-mb")
        # the whole message is walked within bounds first, then only the token is unpacked before it is checked
        parts = wire.split_map(message, max_objects=self.options.max_objects,
                               deadline=time.monotonic() + self.options.decode_seconds)
        token = parts.get("api_token")
        self.core.check_token(None if token is None or len(token) > 1024 else wire.unpack(token))
        endpoint = wire.unpack(parts["endpoint"]) if "endpoint" in parts else "get_action"
        if not isinstance(endpoint, str) or endpoint not in self._handlers:
            raise ServeError(f"unknown endpoint {str(endpoint)[:60]!r} — expected one of: {', '.join(ENDPOINTS)}")
        seen["endpoint"] = endpoint
        data = wire.revive(wire.unpack(parts["data"])) if "data" in parts else None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ServeError(f"malformed request — expected 'data' to be a map, got {type(data).__name__}")
        return self._handlers[endpoint](data)

    # ------------------------------------------------------------------ endpoints (the core does the work)
    @property
    def default_embodiment(self) -> str | None:
        return self.core.default_embodiment

    def _ping(self, data: dict) -> dict:
        return {"status": "ok", "message": "Server is running", **self.core.describe()}

    def describe(self) -> dict[str, Any]:
        return self.core.describe()

    def _get_action(self, data: dict) -> list:
        action, info = self.core.get_action(data.get("observation"), data.get("options"))
        return [action, info]

    def _reset(self, data: dict) -> dict:
        return self.core.reset()

    def _get_modality_config(self, data: dict) -> dict:
        return self.core.modality_config(data.get("embodiment"))

    def _kill(self, data: dict) -> dict:
        if not self.options.allow_kill:
            raise ServeError("kill is disabled on this server — start it with --allow-kill to allow remote shutdown")
        self.stop()
        return {"status": "ok", "message": "Server is shutting down"}


def configure_logging(level: int = logging.INFO) -> None:
    """One line per request on stderr, with a timestamp (for ``gr00t-trt serve``)."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(level)


# ------------------------------------------------------------------------------------------ the CLI's entry
PROTOCOLS = ("zmq", "openpi")


def run_server(folder: str | Path, *, backend: str = "auto", options: ServerOptions = ServerOptions(),
               on_ready: Callable[[Any], None] | None = None, protocol: str = "zmq",
               backend_options: dict[str, Any] | None = None) -> None:
    """Load the export, serve it with ``protocol`` (Isaac-GR00T's ZeroMQ or openpi's websocket) until
    SIGINT/SIGTERM (or an allowed kill), then release everything. ``backend_options`` go to
    ``Policy.load`` (ORT: ``threads``, ``shared_threads``)."""
    from ..runtime.policy import Policy

    if protocol not in PROTOCOLS:
        raise ServeError(f"unknown protocol {protocol!r} — expected one of: {', '.join(PROTOCOLS)}")
    if protocol == "openpi":
        require("websockets", "gr00t-trt[serve]", "The openpi websocket server")  # before the export is loaded
    policy = Policy.load(folder, backend=backend, **(backend_options or {}))
    try:
        if protocol == "openpi":
            from .openpi import run_openpi_server

            run_openpi_server(policy, options, on_ready)
            return
        with PolicyServer(policy, options) as server:
            if on_ready is not None:
                on_ready(server)
            with _stop_on_signals(server):
                server.serve()
    finally:
        policy.close()
