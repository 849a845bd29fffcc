"""The policy-server wire format, byte-compatible with Isaac-GR00T's ``gr00t/policy/server_client.py``.

A message is msgpack. Inside it, a numpy array travels as ``{"__ndarray_class__": True, "as_npy": <np.save
bytes>}`` and a modality config as ``{"__ModalityConfig_class__": True, "as_json": {...}}``. Arrays are read
back with ``allow_pickle=False`` only, so object arrays are refused on both sides. A request is
``{"endpoint": NAME, "data": {...}, "api_token": ...}``; an error reply is ``{"error": message}``.

numpy + msgpack only: the light client imports this module on a robot with neither torch nor onnxruntime.
Decoding is two-step (``unpack`` then ``revive``) so a server can check the token before it parses any
array a stranger sent.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from typing import Any

import msgpack
import numpy as np

from ..errors import ServeError

NDARRAY_TAG = "__ndarray_class__"
MODALITY_CONFIG_TAG = "__ModalityConfig_class__"
NPY_MAGIC = b"\x93NUMPY"


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
def unpack(data: bytes) -> Any:
    """msgpack bytes -> plain Python objects; tagged arrays and configs are left as their dicts."""
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


def decode(data: bytes) -> Any:
    """msgpack bytes -> Python objects with numpy arrays and ModalityConfig restored."""
    return revive(unpack(data))


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
