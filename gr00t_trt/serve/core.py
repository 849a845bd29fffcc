"""The request handling every protocol shares: token check, request checks, the policy call, the replies.

``PolicyServer`` (ZeroMQ, Isaac-GR00T's protocol) and ``OpenpiServer`` (websocket, openpi's) only move
bytes: each decodes its own envelope and hands the decoded request to one ``ServingCore``, so the
limits, error texts, options and the identity sent back are the same whatever the wire.

Concurrency: the policy is called under the core's lock and only there; decoding a request and sending a
reply happen outside it (a slow client never stalls the others), and each reply is built from the values
of its own call, never from shared state.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import signal
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import __version__
from ..base.errors import ServeError
from ..runtime.policy import OPTION_KEYS, export_identity
from . import wire
from .modality import io_description, modality_configs

log = logging.getLogger("gr00t_trt.serve")

DEFAULT_PORT = 5555
DEFAULT_MAX_MESSAGE_BYTES = 64 << 20  # two 480x640 cameras are 1.8 MB; leaves room for batches and noise
WIDE_HOSTS = ("*", "0.0.0.0", "::", "")
#: the token comparison: constant time, so a stranger cannot learn the token from reply latencies
compare_token = hmac.compare_digest


@dataclass(frozen=True)
class ServerOptions:
    """How a server listens and what it allows (both protocols)."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT  # 0: an ephemeral port (read it back from the server's .port)
    api_token: str | None = None
    allow_kill: bool = False
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    embodiment: str | None = None  # default embodiment when a request names none
    max_objects: int = wire.MAX_OBJECTS  # values in one request (map keys, values, list items)
    decode_seconds: float = 0.5  # longest a request may take to decode before it is refused
    max_clients: int = 8  # websocket connections served at once (ZeroMQ's REP socket serves one request at a time)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_options(options: ServerOptions) -> None:
    if options.max_message_bytes <= 0:
        raise ServeError(f"max_message_bytes must be positive, got {options.max_message_bytes}")
    if not 0 <= options.port <= 65535:
        raise ServeError(f"port {options.port} is out of range — expected 1..65535 (or 0 for any free port)")
    if options.max_clients < 1:
        raise ServeError(f"max_clients must be at least 1, got {options.max_clients}")


def warn_if_open(options: ServerOptions, address: str) -> None:
    if not is_loopback(options.host) and not options.api_token:
        log.warning("listening on %s without an API token: anyone who can reach this port can drive the "
                    "robot policy — set --api-token (or GR00T_TRT_API_TOKEN), or bind 127.0.0.1", address)


class ServingCore:
    """One policy behind any protocol: every method takes decoded values and returns plain values."""

    def __init__(self, policy: Any, options: ServerOptions) -> None:
        check_options(options)
        self.policy, self.options = policy, options
        self.default_embodiment = policy.resolve_embodiment(options.embodiment) if (
            options.embodiment or len(policy.manifest.embodiments) == 1) else None
        self.lock = threading.Lock()

    def check_token(self, given: Any, hint: str = "pass the server's token as api_token") -> None:
        expected = self.options.api_token
        if not expected:
            return
        ok = isinstance(given, str) and compare_token(given.encode(), expected.encode())
        if not ok:
            raise ServeError(f"Unauthorized: invalid or missing API token — {hint}")

    def describe(self) -> dict[str, Any]:
        """The server's identity and what it expects (ZeroMQ: every ping; openpi: the metadata on connect)."""
        m, spec = self.policy.manifest, self.policy.preprocessor.spec
        return {
            "server": f"gr00t-trt {__version__}",
            "export": export_identity(m, paths=bool(self.options.api_token)),
            "backend": self.policy.pipeline.backend.name,
            "embodiments": sorted(m.embodiments),
            "default_embodiment": self.default_embodiment,
            "io": {tag: io_description(spec.embodiment(tag), m.image_sizes) for tag in sorted(m.embodiments)},
        }

    def embodiment(self, value: Any) -> str:
        if value is None:
            if self.default_embodiment is None:
                raise ServeError(f"this server has {len(self.policy.manifest.embodiments)} embodiments and no default — "
                                 f"pass options={{'embodiment': TAG}} with one of: {', '.join(sorted(self.policy.manifest.embodiments))}")
            return self.default_embodiment
        if not isinstance(value, str):
            raise ServeError(f"bad option 'embodiment' — expected a string tag, got {type(value).__name__}")
        self.policy.manifest.embodiment(value)  # raises with the exported tags
        return value

    def get_action(self, observation: Any, options: Any, where: str = "data['observation']"
                   ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """``(action, info)`` of one request, the policy called under the lock and nothing else; ``where``
        names the observation in the protocol's terms for the error message."""
        if not isinstance(observation, dict) or not observation:
            raise ServeError(f"bad get_action request — expected {where} to be a non-empty map, got "
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
        tag = self.embodiment(options.get("embodiment"))
        known = {k: v for k, v in options.items() if k in OPTION_KEYS}
        with self.lock:
            actions, info = self.policy.get_action(observation, dict(known, embodiment=tag))
        info["export"] = export_identity(self.policy.manifest, paths=bool(self.options.api_token))
        ignored = sorted(str(k) for k in options if k not in OPTION_KEYS)
        if ignored:
            info["ignored_options"] = ignored
        return actions, info

    def reset(self) -> dict:
        with self.lock:
            self.policy.reset()
        return {}

    def modality_config(self, embodiment: Any) -> dict[str, wire.ModalityConfig]:
        return modality_configs(self.policy.preprocessor.spec.embodiment(self.embodiment(embodiment)))


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


class _stop_on_signals:
    """Make SIGINT/SIGTERM stop the server loop (main thread only; elsewhere signals stay as they are)."""

    def __init__(self, server: Any) -> None:
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
