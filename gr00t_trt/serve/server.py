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

import hmac
import ipaddress
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..base.errors import Gr00tTrtError, ServeError, require
from . import wire
from .modality import io_description, modality_configs

log = logging.getLogger("gr00t_trt.serve")

DEFAULT_PORT = 5555
DEFAULT_MAX_MESSAGE_BYTES = 64 << 20  # two 480x640 cameras are 1.8 MB; leaves room for batches and noise
ENDPOINTS = ("ping", "get_action", "reset", "get_modality_config", "kill")
OPTION_KEYS = ("seed", "noise", "embodiment")
WIDE_HOSTS = ("*", "0.0.0.0", "::", "")
#: the token comparison: constant time, so a stranger cannot learn the token from reply latencies
compare_token = hmac.compare_digest


@dataclass(frozen=True)
class ServerOptions:
    """How the server listens and what it allows."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT  # 0: an ephemeral port (read it back from PolicyServer.port)
    api_token: str | None = None
    allow_kill: bool = False
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    embodiment: str | None = None  # default embodiment when a request names none
    max_objects: int = wire.MAX_OBJECTS  # values in one request (map keys, values, list items)
    decode_seconds: float = 0.5  # longest a request may take to decode before it is refused


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class PolicyServer:
    """Serves one ``Policy`` on a ZeroMQ REP socket. ``serve()`` blocks until ``stop()`` or an allowed kill."""

    def __init__(self, policy, options: ServerOptions = ServerOptions()) -> None:
        zmq = require("zmq", "pyzmq", "The policy server")
        if options.max_message_bytes <= 0:
            raise ServeError(f"max_message_bytes must be positive, got {options.max_message_bytes}")
        if not 0 <= options.port <= 65535:
            raise ServeError(f"port {options.port} is out of range — expected 1..65535 (or 0 for any free port)")
        self.policy, self.options = policy, options
        self.default_embodiment = policy.resolve_embodiment(options.embodiment) if (
            options.embodiment or len(policy.manifest.embodiments) == 1) else None
        self._lock = threading.Lock()
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
        if not is_loopback(options.host) and not options.api_token:
            log.warning("listening on %s without an API token: anyone who can reach this port can drive the "
                        "robot policy — set --api-token (or GR00T_TRT_API_TOKEN), or bind 127.0.0.1", address)
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
        self._check_token(None if token is None or len(token) > 1024 else wire.unpack(token))
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

    def _check_token(self, given: Any) -> None:
        expected = self.options.api_token
        if not expected:
            return
        ok = isinstance(given, str) and compare_token(given.encode(), expected.encode())
        if not ok:
            raise ServeError("Unauthorized: invalid or missing API token — pass the server's token as api_token")

    # ------------------------------------------------------------------ endpoints
    def _ping(self, data: dict) -> dict:
        return {"status": "ok", "message": "Server is running", **self.describe()}

    def describe(self) -> dict[str, Any]:
        """The server's identity and what it expects: sent with every ping."""
        m, spec = self.policy.manifest, self.policy.preprocessor.spec
        return {
            "server": f"gr00t-trt {__version__}",
            "export": export_identity(m, paths=bool(self.options.api_token)),
            "backend": self.policy.pipeline.backend.name,
            "embodiments": sorted(m.embodiments),
            "default_embodiment": self.default_embodiment,
            "io": {tag: io_description(spec.embodiment(tag), m.image_sizes) for tag in sorted(m.embodiments)},
        }

    def _embodiment(self, value: Any) -> str:
        if value is None:
            if self.default_embodiment is None:
                raise ServeError(f"this server has {len(self.policy.manifest.embodiments)} embodiments and no default — "
                                 f"pass options={{'embodiment': TAG}} with one of: {', '.join(sorted(self.policy.manifest.embodiments))}")
            return self.default_embodiment
        if not isinstance(value, str):
            raise ServeError(f"bad option 'embodiment' — expected a string tag, got {type(value).__name__}")
        self.policy.manifest.embodiment(value)  # raises with the exported tags
        return value

    def _get_action(self, data: dict) -> list:
        observation, options = data.get("observation"), data.get("options")
        if not isinstance(observation, dict) or not observation:
            raise ServeError(f"bad get_action request — expected data['observation'] to be a non-empty map, got "
                             f"{type(observation).__name__}")
        options = {} if options is None else options
        if not isinstance(options, dict):
            raise ServeError(f"bad get_action options — expected a map or None, got {type(options).__name__}")
        check_observation_types(observation)
        seed, noise = options.get("seed"), options.get("noise")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ServeError(f"bad option 'seed' — expected a non-negative integer, got {seed!r:.40}")
        if noise is not None and not isinstance(noise, np.ndarray):
            raise ServeError(f"bad option 'noise' — expected a float32 array [B, H, Da], got {type(noise).__name__}")
        tag = self._embodiment(options.get("embodiment"))
        with self._lock:
            actions = self.policy.get_action(observation, embodiment=tag, noise=noise, seed=seed)
            timings = dict(self.policy.last_timings)
        info: dict[str, Any] = {
            "timings_ms": timings,
            "embodiment": tag,
            "seed": seed,
            "noise": "given" if noise is not None else "seeded" if seed is not None else "random",
            "backend": self.policy.pipeline.backend.name,
            "export": export_identity(self.policy.manifest, paths=bool(self.options.api_token)),
        }
        ignored = sorted(str(k) for k in options if k not in OPTION_KEYS)
        if ignored:
            info["ignored_options"] = ignored
        return [actions, info]

    def _reset(self, data: dict) -> dict:
        with self._lock:
            self.policy.reset()
        return {}

    def _get_modality_config(self, data: dict) -> dict:
        tag = self._embodiment(data.get("embodiment"))
        return modality_configs(self.policy.preprocessor.spec.embodiment(tag))

    def _kill(self, data: dict) -> dict:
        if not self.options.allow_kill:
            raise ServeError("kill is disabled on this server — start it with --allow-kill to allow remote shutdown")
        self.stop()
        return {"status": "ok", "message": "Server is shutting down"}


def export_identity(manifest, paths: bool = True) -> dict[str, Any]:
    """What identifies the served model: source checkpoint and its fingerprint, export format, exporter.
    ``paths=False`` names a local checkpoint by its folder name only (a server without a token answers
    ``ping`` to anyone, who has no business learning the host's directory layout)."""
    source = manifest.source
    checkpoint = source.get("checkpoint")
    if not paths and isinstance(checkpoint, str) and checkpoint.startswith(("/", "~", ".")):
        checkpoint = Path(checkpoint).name
    return {
        "checkpoint": checkpoint,
        "fingerprint": source.get("fingerprint"),
        "format": manifest.format,
        "format_version": manifest.format_version,
        "exporter": dict(manifest.exporter),
        "steps": manifest.steps,
        "precision": sorted({g.precision for g in manifest.graphs.values()}),
    }


def check_observation_types(observation: dict) -> None:
    """Refuse what no observation holds before the policy sees it: leaves must be numpy arrays or lists of
    strings (nested ``{"video": {...}}`` or flat ``"video.<k>"`` form). Keys, shapes and dtypes are the
    Preprocessor's to check; it does so before any graph runs."""
    for key, value in observation.items():
        _check_key(key, "observation")
        if isinstance(value, dict):
            for inner, leaf in value.items():
                _check_key(inner, f"observation[{key!r}]")
                _check_leaf(f"{key}.{inner}", leaf)
        else:
            _check_leaf(key, value)


def _check_key(key: Any, where: str) -> None:
    if not isinstance(key, str):
        raise ServeError(f"bad {where} key {key!r:.60} — expected a string key, got {type(key).__name__}")


def _check_leaf(name: str, value: Any) -> None:
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufU":
            raise ServeError(f"bad observation {name!r} — expected a numeric or string array, got dtype {value.dtype}")
        return
    if isinstance(value, (list, tuple)) and all(
        isinstance(item, str) or (isinstance(item, list) and all(isinstance(s, str) for s in item)) for item in value
    ):
        return
    raise ServeError(f"bad observation {name!r} — expected a numpy array or a list of strings, got "
                     f"{type(value).__name__}")


def configure_logging(level: int = logging.INFO) -> None:
    """One line per request on stderr, with a timestamp (for ``gr00t-trt serve``)."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(level)


# ------------------------------------------------------------------------------------------ the CLI's entry
def run_server(folder: str | Path, *, backend: str = "auto", options: ServerOptions = ServerOptions(),
               on_ready: Callable[[PolicyServer], None] | None = None) -> None:
    """Load the export, serve it until SIGINT/SIGTERM (or an allowed kill), then release everything."""
    from ..runtime.policy import Policy

    policy = Policy.load(folder, backend=backend)
    try:
        with PolicyServer(policy, options) as server:
            if on_ready is not None:
                on_ready(server)
            with _stop_on_signals(server):
                server.serve()
    finally:
        policy.close()


class _stop_on_signals:
    """Make SIGINT/SIGTERM stop the server loop (main thread only; elsewhere signals stay as they are)."""

    def __init__(self, server: PolicyServer) -> None:
        self.server, self.previous = server, {}

    def __enter__(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        log.info("received %s, stopping after the current request", signal.Signals(signum).name)
        self.server.stop()

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
