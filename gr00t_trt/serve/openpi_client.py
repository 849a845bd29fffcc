"""openpi's websocket protocol from the robot side, light (numpy, msgpack, websockets): the frame codec
shared with ``OpenpiServer`` and ``OpenpiClient``, which gives an openpi server the same call as
``Policy`` and ``PolicyClient``: ``get_action(observation, options) -> (action, info)``.

Arrays travel as openpi's ``msgpack_numpy`` does: ``{b"__ndarray__": True, b"data": raw bytes, b"dtype":
dtype.str, b"shape": [...]}`` and numpy scalars as ``{b"__npgeneric__": True, b"data": value, b"dtype":
...}``. Decoding walks the frame within ``wire``'s bounds before building anything, rebuilds each array
from its raw bytes only after checking their size against dtype and shape, and refuses object, void and
complex dtypes (nothing is ever unpickled).
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from typing import Any

import msgpack
import numpy as np

from ..base.errors import ServeError, require
from . import wire

DEFAULT_PORT = 8000  # openpi's
API_KEY_PREFIX = "Api-Key "
_REFUSED_KINDS = "OVc"  # object (pickle), void/structured and complex: never in an observation
RESERVED_KEYS = ("server_timing", "policy_timing", "info")  # what a gr00t-trt reply adds to the action keys


# ------------------------------------------------------------------------------------------ msgpack-numpy
def _pack_hook(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in _REFUSED_KINDS:
            raise ServeError(f"cannot send an array of dtype {obj.dtype} — expected numbers, bools or strings")
        return {b"__ndarray__": True, b"data": np.ascontiguousarray(obj).tobytes(), b"dtype": obj.dtype.str,
                b"shape": list(obj.shape)}
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    raise ServeError(f"cannot send a {type(obj).__name__} — expected numbers, strings, lists, dicts or numpy arrays")


def pack(obj: Any) -> bytes:
    """msgpack bytes in openpi's numpy convention."""
    try:
        return msgpack.packb(obj, default=_pack_hook)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ServeError(f"cannot encode the message — {exc}") from None


def _dtype(value: Any) -> np.dtype:
    if not isinstance(value, str | bytes) or len(value) > 32:
        raise ServeError(f"bad array — expected a numpy dtype string such as '<f4', got {value!r:.40}")
    try:
        dtype = np.dtype(value.decode() if isinstance(value, bytes) else value)
    except (TypeError, ValueError):
        raise ServeError(f"bad array — {value!r:.40} is not a numpy dtype") from None
    if dtype.kind in _REFUSED_KINDS or dtype.hasobject:
        raise ServeError(f"bad array — dtype {dtype} is refused; send numbers, bools or strings")
    return dtype


def _revive(obj: dict) -> Any:
    if b"__ndarray__" in obj:
        dtype, shape, data = _dtype(obj.get(b"dtype")), obj.get(b"shape"), obj.get(b"data")
        if (not isinstance(shape, list) or len(shape) > wire.MAX_DEPTH
                or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)):
            raise ServeError(f"bad array — expected 'shape' to be a list of non-negative ints, got {shape!r:.60}")
        if not isinstance(data, bytes):
            raise ServeError(f"bad array — expected 'data' to be bytes, got {type(data).__name__}")
        expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if len(data) != expected:
            raise ServeError(f"bad array — shape {shape} of {dtype} needs {expected} bytes, got {len(data)}")
        return np.frombuffer(data, dtype=dtype).reshape(shape)
    if b"__npgeneric__" in obj:
        return _dtype(obj.get(b"dtype")).type(obj.get(b"data"))
    return obj


def unpack(data: bytes, *, max_objects: int = wire.MAX_OBJECTS, deadline: float | None = None) -> Any:
    """One openpi frame -> Python objects with numpy arrays, within the same bounds as a ZeroMQ request."""
    wire.scan(data, max_objects=max_objects, deadline=deadline)
    try:
        return msgpack.unpackb(data, raw=False, object_hook=_revive)
    except ServeError:
        raise
    except Exception as exc:  # msgpack's and numpy's own errors: a malformed frame, answered as such
        raise ServeError(f"malformed message — expected msgpack, got {type(exc).__name__}: {str(exc)[:120]}") from None


class OpenpiClient:
    """Talks to an openpi-protocol server (``gr00t-trt serve --protocol openpi``). Not thread-safe: one per
    thread. ``metadata`` is what the server sent on connect; a failed request raises ``ServeError``."""

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT, api_key: str | None = None,
                 timeout_s: float = 15.0, max_reply_bytes: int = 64 << 20) -> None:
        require("websockets", "gr00t-trt[serve]", "The openpi client")
        from websockets.sync.client import connect

        self.uri = f"ws://{f'[{host}]' if ':' in host else host}:{port}"
        self.timeout_s = timeout_s
        headers = {"Authorization": f"{API_KEY_PREFIX}{api_key}"} if api_key else None
        self._stack = ExitStack()  # the connection is a context manager, kept open until close()
        try:
            self._ws = self._stack.enter_context(connect(self.uri, compression=None, max_size=max_reply_bytes,
                                                         additional_headers=headers, open_timeout=timeout_s))
            self.metadata = unpack(self._ws.recv(timeout=timeout_s))
        except ServeError:
            self._stack.close()
            raise
        except Exception as exc:  # refused handshake (401, 1013), no server, timeout
            self._stack.close()
            raise ServeError(f"cannot open {self.uri} — {type(exc).__name__}: {exc}") from None

    def infer(self, observation: dict[str, Any]) -> dict[str, Any]:
        """openpi's call: the reply map (action keys, ``server_timing``, ``policy_timing``, ``info``)."""
        try:
            self._ws.send(pack(observation))
            reply = self._ws.recv(timeout=self.timeout_s)
        except TimeoutError:
            raise ServeError(f"no reply from {self.uri} within {self.timeout_s:g} s") from None
        except Exception as exc:
            raise ServeError(f"connection to {self.uri} failed — {type(exc).__name__}: {exc}") from None
        if isinstance(reply, str):
            raise ServeError(f"server error: {reply}")
        deadline = time.monotonic() + self.timeout_s
        response = unpack(reply, deadline=deadline)
        if not isinstance(response, dict):
            raise ServeError(f"bad reply — expected a map, got {type(response).__name__}")
        return response

    def get_action(self, observation: dict[str, Any], options: dict[str, Any] | None = None
                   ) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(action, info)`` as ``Policy`` and ``PolicyClient`` answer; ``options`` (embodiment, seed, noise)
        travel in the observation's ``"options"`` entry."""
        reply = self.infer(dict(observation, options=options) if options else observation)
        info = dict(reply.get("info") or {})
        info["server_timing"] = reply.get("server_timing")
        return {k: v for k, v in reply.items() if k not in RESERVED_KEYS}, info

    def reset(self, options: dict[str, Any] | None = None) -> dict:
        """openpi's servers keep no episode state per connection; nothing to send."""
        return {}

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> OpenpiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
