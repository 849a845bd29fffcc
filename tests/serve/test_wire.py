"""The wire format: byte-level agreement with Isaac-GR00T's encoding, and refusals."""

from __future__ import annotations

import io
import os
import pickle
import time

import msgpack
import numpy as np
import pytest
from conftest import raw_decode_hook, raw_encode_hook

from gr00t_trt.base.errors import ServeError
from gr00t_trt.serve import wire


def test_arrays_are_encoded_exactly_as_isaac_gr00t_does():
    obj = {"video": {"cam": np.arange(24, dtype=np.uint8).reshape(1, 1, 2, 4, 3)}, "text": [["hi"]], "n": 3}
    assert wire.encode(obj) == msgpack.packb(obj, default=raw_encode_hook)


def test_round_trip_keeps_dtype_shape_and_values():
    arrays = {"f32": np.linspace(0, 1, 6, dtype=np.float32).reshape(2, 3), "u8": np.zeros((1, 2), np.uint8),
              "i64": np.array([-1, 2**40]), "b": np.array([True, False]), "s": np.array(["a", "bc"]),
              "f16": np.ones(3, np.float16), "scalar0d": np.array(2.5)}
    back = wire.decode(wire.encode(arrays))
    for key, value in arrays.items():
        assert back[key].dtype == value.dtype and back[key].shape == value.shape
        np.testing.assert_array_equal(back[key], value)
    assert back["f32"].flags.writeable


def test_decode_matches_a_raw_isaac_style_decoder():
    message = msgpack.packb({"a": [np.eye(2, dtype=np.float32), {"b": np.int8(-3).item()}]}, default=raw_encode_hook)
    ours, theirs = wire.decode(message), msgpack.unpackb(message, object_hook=raw_decode_hook)
    np.testing.assert_array_equal(ours["a"][0], theirs["a"][0])
    assert ours["a"][1] == theirs["a"][1] == {"b": -3}


def test_numpy_scalars_travel_as_numbers():
    assert wire.decode(wire.encode({"x": np.float32(1.5), "n": np.int64(7)})) == {"x": 1.5, "n": 7}


def test_modality_config_tag_round_trip():
    config = wire.ModalityConfig([0, 1], ["a"], action_configs=[{"rep": "RELATIVE", "type": "NON_EEF",
                                                                  "format": "DEFAULT", "state_key": None}])
    raw = msgpack.unpackb(wire.encode({"action": config}))
    assert raw["action"]["__ModalityConfig_class__"] is True
    assert raw["action"]["as_json"] == {"delta_indices": [0, 1], "modality_keys": ["a"], "sin_cos_embedding_keys": None,
                                        "mean_std_embedding_keys": None, "action_configs": config.action_configs}
    assert wire.decode(wire.encode({"action": config}))["action"] == config


def test_object_arrays_are_refused_on_both_sides():
    with pytest.raises(ServeError, match="cannot send an array of dtype object"):
        wire.encode({"x": np.array([None, 1], dtype=object)})
    out = io.BytesIO()
    np.save(out, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    message = msgpack.packb({"x": {"__ndarray_class__": True, "as_npy": out.getvalue()}})
    with pytest.raises(ServeError, match="object arrays are refused"):
        wire.decode(message)


@pytest.mark.parametrize(
    "blob, match",
    [(b"PK\x03\x04 an npz", "expected 'as_npy' to hold the bytes of np.save"),
     ("a string", "expected 'as_npy'"),
     (None, "expected 'as_npy'"),
     (b"\x93NUMPY\x01\x00garbage", "np.load failed")],
)
def test_bad_npy_payloads_are_refused(blob, match):
    with pytest.raises(ServeError, match=match):
        wire.decode(msgpack.packb({"__ndarray_class__": True, "as_npy": blob}))


def test_truncated_npy_data_is_refused():
    good = wire.npy_bytes(np.zeros((64, 64), np.float32))
    with pytest.raises(ServeError, match="np.load failed"):
        wire.load_npy(good[:-100])


@pytest.mark.parametrize("data", [b"\xc1", b"\x92\x01", msgpack.packb([1]) + b"\x01", b"\x81\x01\x02"])
def test_malformed_msgpack_is_one_clear_error(data):
    with pytest.raises(ServeError, match="malformed message — "):
        wire.decode(data)


def test_deep_nesting_is_refused_not_crashing():
    data = b"\x91" * 5000 + b"\x01"  # 5000 nested one-element arrays
    with pytest.raises(ServeError, match="malformed message"):
        wire.decode(data)


def test_unsendable_objects_say_what_is_allowed():
    with pytest.raises(ServeError, match="cannot send a set"):
        wire.encode({"x": {1, 2}})


def test_request_shape_matches_the_original_client():
    assert wire.request("ping", api_token=None, with_data=False) == {"endpoint": "ping"}
    assert wire.request("get_action", {"observation": {}}, "t") == {
        "endpoint": "get_action", "data": {"observation": {}}, "api_token": "t"}


# ------------------------------------------------------------------------------------------ bounded decoding
class _LeavesAMark:
    """Unpickling this makes a folder: a decoder that ever unpickles is caught by the mark, not by wording."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_a_pickled_payload_is_never_unpickled(tmp_path):
    array = np.empty(1, dtype=object)
    array[0] = _LeavesAMark(tmp_path / "mark")
    out = io.BytesIO()
    np.save(out, array, allow_pickle=True)
    pickle.loads(pickle.dumps(_LeavesAMark(tmp_path / "proof")))
    assert (tmp_path / "proof").is_dir()  # the payload does leave its mark when unpickled
    with pytest.raises(ServeError):
        wire.decode(msgpack.packb({"x": {"__ndarray_class__": True, "as_npy": out.getvalue()}}))
    assert not (tmp_path / "mark").exists(), "the wire decoder unpickled an array"


def empty_list_bomb(count: int) -> bytes:
    """A msgpack array of ``count`` empty arrays: one byte each on the wire, ~60 bytes each once built."""
    return b"\xdd" + count.to_bytes(4, "big") + b"\x90" * count


def test_a_bomb_of_empty_lists_is_refused_fast_before_anything_is_built():
    start = time.perf_counter()
    with pytest.raises(ServeError, match="more than 10,000 values"):
        wire.decode(empty_list_bomb(4 << 20))
    assert time.perf_counter() - start < 0.5


def test_decoding_stops_at_the_deadline():
    with pytest.raises(ServeError, match="longer than the time allowed"):
        wire.decode(empty_list_bomb(5000), deadline=time.monotonic() - 1)


@pytest.mark.parametrize("data, match", [
    (b"\x91" * 40 + b"\x01", "nested deeper than 32"),
    (msgpack.packb({"a": 1}) + b"\x00", "1 bytes after the msgpack value"),
    (b"\xc6\xff\xff\xff\xff", "truncated"),
    (b"\xdd\xff\xff\xff\xff", "truncated"),
])
def test_scan_refuses_malformed_structure(data, match):
    with pytest.raises(ServeError, match=match):
        wire.scan(data)


def test_scan_accepts_every_msgpack_type():
    value = {"n": [0, 127, 128, -1, -33, 2**16, 2**33, -(2**40), 1.5, None, True, False, "x" * 40, b"y" * 300,
                   msgpack.ExtType(3, b"abc"), [[]] * 20, {"k": {}}]}
    data = msgpack.packb(value, use_single_float=False)
    wire.scan(data)
    assert wire.scan(msgpack.packb(np.float32(2).item(), use_single_float=True)) is None


def test_split_map_gives_each_value_unparsed():
    parts = wire.split_map(msgpack.packb({"endpoint": "ping", "data": {"x": [1, 2]}, "api_token": "t"}))
    assert set(parts) == {"endpoint", "data", "api_token"}
    assert msgpack.unpackb(parts["data"]) == {"x": [1, 2]} and msgpack.unpackb(parts["api_token"]) == "t"
    with pytest.raises(ServeError, match="expected a map"):
        wire.split_map(msgpack.packb([1]))
    with pytest.raises(ServeError, match="expected string keys"):
        wire.split_map(msgpack.packb({b"endpoint": "ping"}))


def npy_header(descr: str, shape: tuple) -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": descr, "fortran_order": False, "shape": shape})
    return out.getvalue()


def test_strings_of_zero_bytes_are_refused():
    with pytest.raises(ServeError, match="100,000,000 elements of zero bytes"):
        wire.load_npy(npy_header("<U0", (10**8,)))


@pytest.mark.parametrize("code_point", [0x110000, 0xD800])
def test_string_arrays_with_impossible_code_points_are_refused(code_point):
    blob = npy_header(">U1", (2,)) + np.array([65, code_point], ">u4").tobytes()
    with pytest.raises(ServeError, match="not Unicode code points"):
        wire.load_npy(blob)
    assert wire.load_npy(npy_header(">U1", (1,)) + np.array([65], ">u4").tobytes()).tolist() == ["A"]


def test_ipv6_literals_are_bracketed():
    assert wire.tcp_address("::1", 5555) == "tcp://[::1]:5555"
    assert wire.tcp_address("127.0.0.1", "*") == "tcp://127.0.0.1:*"
