"""The wire format: byte-level agreement with Isaac-GR00T's encoding, and refusals."""

from __future__ import annotations

import io

import msgpack
import numpy as np
import pytest
from conftest import raw_decode_hook, raw_encode_hook

from gr00t_trt.errors import ServeError
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
    with pytest.raises(ServeError, match="malformed message — expected msgpack"):
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
