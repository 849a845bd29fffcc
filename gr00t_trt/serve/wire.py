"""The policy-server wire format, byte-compatible with Isaac-GR00T's ``gr00t/policy/server_client.py``.

A message is msgpack. Inside it, a numpy array travels as ``{"__ndarray_class__": True, "as_npy": <np.save
bytes>}`` and a modality config as ``{"__ModalityConfig_class__": True, "as_json": {...}}``. Arrays are read
back with ``allow_pickle=False`` only, so object arrays are refused on both sides. A request is
``{"endpoint": NAME, "data": {...}, "api_token": ...}``; an error reply is ``{"error": message}``.

numpy + msgpack only: the light client imports this module on a robot with neither torch nor onnxruntime.
Decoding is bounded before anything is built: ``scan`` walks the msgpack structure without making objects
and refuses more than ``max_objects`` values, deeper nesting than ``max_depth`` or a walk past a deadline,
so no message costs more than a small multiple of its size or a fraction of a second to refuse. A server
splits the top-level map with ``split_map`` and checks the token before it unpacks ``data``; arrays are
parsed last (``revive``).
"""

from __future__ import annotations

import io
import time
from dataclasses import asdict, dataclass
from typing import Any

import msgpack
import numpy as np

from ..base.errors import ServeError

NDARRAY_TAG = "__ndarray_class__"
MODALITY_CONFIG_TAG = "__ModalityConfig_class__"
NPY_MAGIC = b"\x93NUMPY"
#: values in one message (every map key, value and list item counts); a request holds a few dozen
MAX_OBJECTS = 10_000
#: nesting of maps and lists in one message; a request nests four deep
MAX_DEPTH = 32


@dataclass
class ModalityConfig:
    """Isaac-GR00T's ``ModalityConfig`` fields, so its clients can rebuild theirs from ``as_json``.

    ``action_configs`` holds one dict per action key: ``rep``/``type``/``format`` as enum *names*
    (``"RELATIVE"``, ``"NON_EEF"``, ``"DEFAULT"``) and ``state_key``, as the original serialises them.
    """

    delta_indices: list[int]
    modality_keys: list[str]
    sin_cos_embedding_keys: list[str] | None = None
    mean_std_embedding_keys: list[str] | None = None
    action_configs: list[dict[str, Any]] | None = None

    @property
    def horizon(self) -> int:
        return len(self.delta_indices)


# ------------------------------------------------------------------------------------------ encode
def _encode_custom(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return {NDARRAY_TAG: True, "as_npy": npy_bytes(obj)}
    if isinstance(obj, ModalityConfig):
        return {MODALITY_CONFIG_TAG: True, "as_json": asdict(obj)}
    if isinstance(obj, np.generic):  # numpy scalars (np.float32(1.0), np.int64(3)) travel as plain numbers
        return obj.item()
    raise ServeError(f"cannot send a {type(obj).__name__} — expected numbers, strings, lists, dicts or numpy arrays")


def npy_bytes(array: np.ndarray) -> bytes:
    """``np.save`` bytes of ``array``; object arrays are refused (they would need pickle)."""
    if array.dtype.hasobject:
        raise ServeError(f"cannot send an array of dtype {array.dtype} — expected a numeric, bool or string dtype "
                         "(object arrays would need pickle)")
    out = io.BytesIO()
    np.save(out, array, allow_pickle=False)
    return out.getvalue()


def encode(obj: Any) -> bytes:
    """msgpack bytes of ``obj`` (dicts, lists, str, numbers, bytes, numpy arrays, ModalityConfig)."""
    try:
        return msgpack.packb(obj, default=_encode_custom)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ServeError(f"cannot encode the message — {exc}") from None


# ------------------------------------------------------------------------------------------ decode
# msgpack first bytes -> (bytes of payload after the type byte, or of the length field; kind)
_FIXED_SIZE = {0xC0: 0, 0xC2: 0, 0xC3: 0, 0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8, 0xD0: 1,
               0xD1: 2, 0xD2: 4, 0xD3: 8, 0xD4: 2, 0xD5: 3, 0xD6: 5, 0xD7: 9, 0xD8: 17}
_LENGTH_PREFIXED = {0xC4: (1, 0), 0xC5: (2, 0), 0xC6: (4, 0), 0xD9: (1, 0), 0xDA: (2, 0), 0xDB: (4, 0),
                    0xC7: (1, 1), 0xC8: (2, 1), 0xC9: (4, 1)}  # (width of the length, extra type byte)
_CONTAINERS = {0xDC: (2, 1), 0xDD: (4, 1), 0xDE: (2, 2), 0xDF: (4, 2)}  # (width of the count, items per entry)


class _Walk:
    """Walks msgpack values without building them, counting every value against the message's bounds."""

    def __init__(self, data: bytes, max_objects: int, max_depth: int, deadline: float | None) -> None:
        self.data, self.max_objects, self.max_depth, self.deadline = memoryview(data), max_objects, max_depth, deadline
        self.count = 0

    def _fail(self, why: str) -> ServeError:
        return ServeError(f"malformed message — {why}")

    def _number(self, pos: int, width: int) -> int:
        if pos + width > len(self.data):
            raise self._fail(f"truncated at byte {pos}")
        return int.from_bytes(self.data[pos:pos + width], "big")

    def _header(self, pos: int) -> tuple[int, int]:
        """(position after the value's own bytes, number of values it contains)."""
        self.count += 1
        if self.count > self.max_objects:
            raise self._fail(f"more than {self.max_objects:,} values — expected a request of a few dozen "
                             "(arrays travel as np.save bytes)")
        if self.deadline is not None and self.count % 1024 == 0 and time.monotonic() > self.deadline:
            raise self._fail("decoding took longer than the time allowed")
        if pos >= len(self.data):
            raise self._fail(f"truncated at byte {pos}")
        first = self.data[pos]
        if first <= 0x7F or first >= 0xE0:
            return pos + 1, 0
        if first <= 0x8F:
            return pos + 1, 2 * (first & 0x0F)
        if first <= 0x9F:
            return pos + 1, first & 0x0F
        if first <= 0xBF:
            return pos + 1 + (first & 0x1F), 0
        if first in _FIXED_SIZE:
            return pos + 1 + _FIXED_SIZE[first], 0
        if first in _LENGTH_PREFIXED:
            width, extra = _LENGTH_PREFIXED[first]
            return pos + 1 + width + extra + self._number(pos + 1, width), 0
        if first in _CONTAINERS:
            width, per_entry = _CONTAINERS[first]
            return pos + 1 + width, per_entry * self._number(pos + 1, width)
        raise self._fail(f"byte 0x{first:02x} at {pos} is not a msgpack type")

    def skip(self, pos: int, depth: int = 0) -> int:
        """The position after the value at ``pos`` (iterative: a stack of values still to walk per level)."""
        pending = [1]
        while pending:
            if pending[-1] == 0:
                pending.pop()
                continue
            pending[-1] -= 1
            pos, inner = self._header(pos)
            if inner:
                if depth + len(pending) > self.max_depth:
                    raise self._fail(f"nested deeper than {self.max_depth} levels")
                pending.append(inner)
        if pos > len(self.data):
            raise self._fail(f"truncated ({len(self.data)} bytes)")
        return pos


def scan(data: bytes, *, max_objects: int = MAX_OBJECTS, max_depth: int = MAX_DEPTH,
         deadline: float | None = None) -> None:
    """Refuse a message that is not one msgpack value within the bounds, before any object is built."""
    walk = _Walk(data, max_objects, max_depth, deadline)
    end = walk.skip(0)
    if end != len(data):
        raise ServeError(f"malformed message — {len(data) - end} bytes after the msgpack value")


def split_map(data: bytes, *, max_objects: int = MAX_OBJECTS, max_depth: int = MAX_DEPTH,
              deadline: float | None = None) -> dict[str, bytes]:
    """The top-level map of a message as ``{key: msgpack bytes of its value}``, the whole message scanned
    within the bounds first, nothing unpacked but the (string) keys: a server checks the token from this."""
    walk = _Walk(data, max_objects, max_depth, deadline)
    pos, entries = walk._header(0)
    if not 0x80 <= data[0] <= 0x8F and data[0] not in (0xDE, 0xDF):
        raise ServeError("malformed request — expected a map with 'endpoint' and 'data'")
    parts: dict[str, bytes] = {}
    for _ in range(entries // 2):
        key_end = walk.skip(pos, depth=1)
        key = unpack(data[pos:key_end])
        if not isinstance(key, str):
            raise ServeError(f"malformed message — expected string keys, got a {type(key).__name__} key")
        value_end = walk.skip(key_end, depth=1)
        parts[key] = data[key_end:value_end]
        pos = value_end
    if pos != len(data):
        raise ServeError(f"malformed message — {len(data) - pos} bytes after the msgpack value")
    return parts


def unpack(data: bytes) -> Any:
    """msgpack bytes -> plain Python objects; tagged arrays and configs are left as their dicts. Call
    ``scan`` (or ``split_map``) first on bytes from a stranger: this builds every object."""
    try:
        return msgpack.unpackb(data, raw=False)
    except Exception as exc:  # msgpack raises ExtraData, FormatError, StackError, ValueError, TypeError...
        raise ServeError(f"malformed message — expected msgpack, got {type(exc).__name__}: {str(exc)[:120]}") from None


def load_npy(blob: Any) -> np.ndarray:
    """The array of ``np.save`` bytes, never unpickling; object arrays and npz archives are refused."""
    if not isinstance(blob, (bytes, bytearray)) or not bytes(blob[:6]) == NPY_MAGIC:
        raise ServeError("bad array — expected 'as_npy' to hold the bytes of np.save (a .npy), got "
                         f"{type(blob).__name__} {bytes(blob[:8]) if isinstance(blob, (bytes, bytearray)) else ''!r}")
    try:
        array = np.load(io.BytesIO(blob), allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise ServeError("bad array — object arrays are refused (they need pickle); send a numeric, bool "
                             "or string dtype") from None
        raise ServeError(f"bad array — np.load failed: {exc}") from None
    except Exception as exc:
        raise ServeError(f"bad array — np.load failed: {type(exc).__name__}: {exc}") from None
    if array.dtype.hasobject:  # pragma: no cover - np.load refuses these already
        raise ServeError(f"bad array — dtype {array.dtype} is refused")
    if array.dtype.itemsize == 0 and array.size:
        raise ServeError(f"bad array — {array.size:,} elements of zero bytes ({array.dtype}); expected elements "
                         "that take room in the message")
    if array.dtype.kind == "U" and array.size:
        code_points = np.ascontiguousarray(array).view(array.dtype.byteorder.replace("=", "") + "u4")
        if code_points.max() > 0x10FFFF or ((code_points >= 0xD800) & (code_points <= 0xDFFF)).any():
            raise ServeError(f"bad array — string array {array.dtype} holds values that are not Unicode code "
                             "points (above 0x10FFFF or surrogates)")
    return array


def _revive_dict(obj: dict) -> Any:
    if obj.get(NDARRAY_TAG) is True or NDARRAY_TAG in obj:
        return load_npy(obj.get("as_npy"))
    if MODALITY_CONFIG_TAG in obj:
        fields = obj.get("as_json")
        try:
            return ModalityConfig(**fields)
        except TypeError as exc:
            raise ServeError(f"bad modality config — {exc}") from None
    return obj


def revive(obj: Any) -> Any:
    """Turn the tagged dicts of an unpacked message into numpy arrays / ModalityConfig, bottom-up like
    msgpack's ``object_hook``."""
    try:
        return _revive(obj)
    except RecursionError:
        raise ServeError("malformed message — nested too deeply") from None


def _revive(obj: Any) -> Any:
    if isinstance(obj, dict):
        return _revive_dict({key: _revive(value) for key, value in obj.items()})
    if isinstance(obj, list):
        return [_revive(value) for value in obj]
    return obj


def decode(data: bytes, *, max_objects: int = MAX_OBJECTS, max_depth: int = MAX_DEPTH,
           deadline: float | None = None) -> Any:
    """msgpack bytes -> Python objects with numpy arrays and ModalityConfig restored, within the bounds."""
    scan(data, max_objects=max_objects, max_depth=max_depth, deadline=deadline)
    return revive(unpack(data))


# ------------------------------------------------------------------------------------------ addresses
def tcp_address(host: str, port: int | str) -> str:
    """``tcp://host:port`` with an IPv6 literal bracketed (``tcp://[::1]:5555``)."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"tcp://{host}:{port}"


def configure_ipv6(socket: Any, host: str) -> None:
    """ZeroMQ sockets are IPv4-only unless told otherwise: enable IPv6 for an IPv6 literal (``::1``)."""
    import zmq

    if ":" in host:
        socket.setsockopt(zmq.IPV6, 1)


# ------------------------------------------------------------------------------------------ messages
def request(endpoint: str, data: dict | None = None, api_token: str | None = None, *, with_data: bool = True) -> dict:
    """A request in Isaac-GR00T's shape (``data`` omitted for endpoints that take none)."""
    message: dict[str, Any] = {"endpoint": endpoint}
    if with_data:
        message["data"] = data
    if api_token:
        message["api_token"] = api_token
    return message


def error_reply(message: str) -> dict:
    return {"error": message}
