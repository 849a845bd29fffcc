"""The server on loopback, driven by a raw Isaac-GR00T-style client: parity with an in-process Policy,
every kind of bad request answered with an error while serving goes on, memory over 1,000 requests,
two clients at once."""

from __future__ import annotations

import gc
import io
import threading
import time
import tracemalloc

import msgpack
import numpy as np
import pytest
import zmq
from conftest import EMBODIMENT, LIMIT, RawClient, raw_encode_hook, start_server, stop_server


def assert_same_actions(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for key in want:
        assert got[key].dtype == want[key].dtype and got[key].shape == want[key].shape, key
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_ping_answers_status_identity_and_shapes(raw, served):
    reply = raw.call("ping", with_data=False)
    assert reply["status"] == "ok"
    assert reply["export"]["fingerprint"] == served.policy.manifest.source["fingerprint"]
    assert reply["export"]["format"] == "gr00t-trt-export"
    assert reply["default_embodiment"] == EMBODIMENT
    io_ = reply["io"][EMBODIMENT]
    spec = served.policy.preprocessor.spec.embodiment(EMBODIMENT)
    assert io_["action_horizon"] == spec.action_horizon
    assert {k: v["shape"][2] for k, v in io_["action"].items()} == spec.action_dims
    assert io_["observation"]["video"][spec.video_keys[0]]["dtype"] == "uint8"


def test_served_actions_equal_in_process_policy_with_seed(raw, observation, reference_policy):
    action, info = raw.call("get_action", {"observation": observation, "options": {"seed": 11}})
    want = reference_policy.predict(observation, embodiment=EMBODIMENT, seed=11)
    assert_same_actions(action, want)
    assert info["seed"] == 11 and info["noise"] == "seeded" and info["embodiment"] == EMBODIMENT
    assert info["timings_ms"]["total"] > 0 and info["timings_ms"]["preprocess"] > 0
    assert info["export"]["fingerprint"] == reference_policy.manifest.source["fingerprint"]


def test_served_actions_equal_in_process_policy_with_noise(raw, observation, reference_policy):
    m = reference_policy.manifest
    noise = np.random.default_rng(5).standard_normal((1, m.dims["H"], m.dims["Da"]), dtype=np.float32)
    action, info = raw.call("get_action", {"observation": observation, "options": {"noise": noise}})
    assert info["noise"] == "given"
    assert_same_actions(action, reference_policy.predict(observation, embodiment=EMBODIMENT, noise=noise))
    other, _ = raw.call("get_action", {"observation": observation, "options": {"noise": -noise}})
    assert not np.array_equal(other[next(iter(other))], action[next(iter(action))])


def test_request_without_endpoint_is_get_action_in_flat_form(raw, observation, reference_policy):
    flat = {f"video.{k}": v for k, v in observation["video"].items()}
    flat |= {f"state.{k}": v for k, v in observation["state"].items()}
    flat |= {k: [t[0] for t in v] for k, v in observation["language"].items()}
    action, _ = raw.call(None, {"observation": flat, "options": {"seed": 2}})
    want = reference_policy.predict(flat, embodiment=EMBODIMENT, seed=2)
    assert all(key.startswith("action.") for key in action)
    assert_same_actions(action, want)


def test_modality_config_in_isaac_gr00t_shape(raw, served):
    reply = raw.call("get_modality_config", with_data=False)
    assert set(reply) == {"video", "state", "action", "language"}
    fields = {"delta_indices", "modality_keys", "sin_cos_embedding_keys", "mean_std_embedding_keys", "action_configs"}
    spec = served.policy.preprocessor.spec.embodiment(EMBODIMENT)
    for modality, value in reply.items():
        assert set(value["ModalityConfig"]) <= fields, modality  # the original's ModalityConfig(**as_json) works
    action = reply["action"]["ModalityConfig"]
    assert action["modality_keys"] == list(spec.action_keys)
    assert len(action["delta_indices"]) == spec.action_horizon
    assert len(action["action_configs"]) == len(spec.action_keys)
    assert action["action_configs"][0]["rep"] in ("RELATIVE", "DELTA", "ABSOLUTE")  # enum names, like the original
    assert reply["video"]["ModalityConfig"]["modality_keys"] == list(spec.video_keys)
    assert reply["language"]["ModalityConfig"]["modality_keys"] == [spec.language_key]


def test_modality_config_of_another_embodiment(raw):
    reply = raw.call("get_modality_config", {"embodiment": "libero_panda"})
    assert reply["action"]["ModalityConfig"]["modality_keys"] == ["eef_pose", "gripper"]


def test_reset_answers_an_empty_info(raw):
    assert raw.call("reset", {"options": None}) == {}


# ------------------------------------------------------------------------------------------ bad requests
def npy_of_object_array() -> bytes:
    out = io.BytesIO()
    np.save(out, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    return out.getvalue()


def bad_requests(observation):
    """(name, raw bytes, expected error fragment): each must be answered with an error."""
    good = {"endpoint": "ping", "api_token": "s3cret-token"}
    pack = lambda obj: msgpack.packb(obj, default=raw_encode_hook)  # noqa: E731
    wrong_state = {**observation, "state": {k: v[:, :, :-1] for k, v in observation["state"].items()}}
    yield "no token", pack({"endpoint": "ping"}), "Unauthorized"
    yield "bad token", pack({**good, "api_token": "s3cret-tokeN"}), "Unauthorized"
    yield "token of wrong type", pack({**good, "api_token": 123}), "Unauthorized"
    yield "garbage", b"\xc1\xc1 not msgpack", "malformed message"
    yield "truncated msgpack", pack(good)[:-3], "malformed message"
    yield "not a map", pack([1, 2, 3]), "expected a map"
    yield "unknown endpoint", pack({**good, "endpoint": "format_disk"}), "unknown endpoint 'format_disk'"
    yield "endpoint not a string", pack({**good, "endpoint": [1, 2]}), "unknown endpoint '[1, 2]'"
    yield "map with int keys", pack({1: 2}), "malformed message"
    yield "kill without allow_kill", pack({**good, "endpoint": "kill"}), "kill is disabled"
    yield "object npy", pack({**good, "endpoint": "get_action", "data": {"observation": {
        "x": {"__ndarray_class__": True, "as_npy": npy_of_object_array()}}}}), "object arrays are refused"
    yield "npz instead of npy", pack({**good, "endpoint": "get_action", "data": {"observation": {
        "x": {"__ndarray_class__": True, "as_npy": b"PK\x03\x04" + b"\0" * 20}}}}), "expected 'as_npy'"
    yield "data not a map", pack({**good, "endpoint": "get_action", "data": [1]}), "expected 'data' to be a map"
    yield "no observation", pack({**good, "endpoint": "get_action", "data": {}}), "data['observation']"
    yield "wrong state width", pack({**good, "endpoint": "get_action", "data": {"observation": wrong_state}}), "width"
    yield "bad seed", pack({**good, "endpoint": "get_action",
                            "data": {"observation": observation, "options": {"seed": "x"}}}), "bad option 'seed'"
    yield "bad noise shape", pack({**good, "endpoint": "get_action", "data": {
        "observation": observation, "options": {"noise": np.zeros((1, 2, 3), np.float32)}}}), "noise must be float32"
    yield "unknown embodiment", pack({**good, "endpoint": "get_action", "data": {
        "observation": observation, "options": {"embodiment": "r2d2"}}}), "'r2d2' was not exported"
    yield "oversized", pack({**good, "data": {"blob": b"\0" * (LIMIT + 10)}}), "message too large"
    get = {**good, "endpoint": "get_action"}
    video_key = next(iter(observation["video"]))
    yield "bytes key", pack({**get, "data": {"observation": {b"video": 1, **observation}}}), "expected a string key"
    yield "bytes inner key", pack({**get, "data": {"observation": {**observation, "video": {
        video_key.encode(): observation["video"][video_key]}}}}), "expected a string key"
    impossible = npy_header(">U1", (1,)) + np.array([0x110000], ">u4").tobytes()
    yield "code point above 0x10FFFF", pack({**get, "data": {"observation": {**observation, "language": {
        "x": {"__ndarray_class__": True, "as_npy": impossible}}}}}), "not Unicode code points"
    yield "10^8 empty strings", pack({**get, "data": {"observation": {"task": {
        "__ndarray_class__": True, "as_npy": npy_header("<U0", (10**8,))}}}}), "elements of zero bytes"
    yield "empty-list bomb", b"\x82\xa8endpoint\xa4ping\xa4data" + empty_list_bomb(LIMIT - 100), "more than 10,000 values"


def npy_header(descr: str, shape: tuple) -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": descr, "fortran_order": False, "shape": shape})
    return out.getvalue()


def empty_list_bomb(count: int) -> bytes:
    return b"\xdd" + count.to_bytes(4, "big") + b"\x90" * count


def test_every_bad_request_gets_an_error_and_the_server_keeps_serving(raw, served, observation):
    before = dict(served.policy.last_timings)
    for name, message, fragment in bad_requests(observation):
        start = time.perf_counter()
        reply = raw.send_bytes(message)
        assert time.perf_counter() - start < 2.0, (name, "took too long to refuse")
        assert isinstance(reply, dict) and set(reply) == {"error"}, name
        assert fragment in reply["error"], (name, reply["error"])
        assert raw.call("ping", with_data=False)["status"] == "ok", name
    assert served.policy.last_timings == before, "a bad request ran the pipeline"
    assert not served.server.stopped


def test_multi_frame_requests_are_answered_and_the_server_keeps_serving(served, raw):
    """A REP socket that replied before reading every frame would raise and end the server (issue 17.1)."""
    ping = msgpack.packb({"endpoint": "ping", "api_token": raw.token})
    raw.socket.send_multipart([b"x", b"y"])
    assert "expected one frame, got 2" in msgpack.unpackb(raw.socket.recv())["error"]
    with zmq.Context() as ctx:
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.RCVTIMEO, 20000)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(f"tcp://127.0.0.1:{served.port}")
        dealer.send_multipart([b"", ping, b"extra"])
        empty, reply = dealer.recv_multipart()
        assert empty == b"" and "expected one frame, got 2" in msgpack.unpackb(reply)["error"]
        dealer.send_multipart([b"", ping])
        assert msgpack.unpackb(dealer.recv_multipart()[1])["status"] == "ok"
        dealer.close()
    assert served.thread.is_alive() and not served.server.stopped
    assert raw.call("ping", with_data=False)["status"] == "ok"


def test_the_token_is_checked_before_the_data_is_unpacked(raw):
    """Invalid UTF-8 inside 'data' would fail unpacking; with a wrong token it must never get that far."""
    bad_string = b"\xa2\xff\xfe"  # a msgpack str of two bytes that are not UTF-8
    message = b"\x83\xa8endpoint\xaaget_action\xa9api_token\xa5wrong\xa4data" + bad_string
    assert "Unauthorized" in raw.send_bytes(message)["error"]
    good = b"\x83\xa8endpoint\xaaget_action\xa9api_token" + msgpack.packb(raw.token) + b"\xa4data" + bad_string
    assert "malformed message" in raw.send_bytes(good)["error"]  # with the token, the data is read (and refused)


def test_the_token_is_compared_in_constant_time(served, raw, monkeypatch):
    import hmac

    from gr00t_trt.serve import core as server_module

    assert server_module.compare_token is hmac.compare_digest
    calls = []
    monkeypatch.setattr(server_module, "compare_token", lambda a, b: calls.append((a, b)) or hmac.compare_digest(a, b))
    assert "Unauthorized" in raw.call("ping", with_data=False, token="nope")["error"]
    assert raw.call("ping", with_data=False)["status"] == "ok"
    assert calls == [(b"nope", raw.token.encode()), (raw.token.encode(), raw.token.encode())]


def test_ping_without_a_token_does_not_reveal_absolute_paths(served_policy):
    server, thread = start_server(served_policy)
    client = RawClient(server.port, token=None)
    try:
        reply = client.call("ping", with_data=False)
    finally:
        client.close()
        stop_server(server, thread)
    checkpoint = str(served_policy.manifest.source["checkpoint"])
    assert checkpoint.startswith("/") and checkpoint not in repr(reply)
    assert reply["export"]["checkpoint"] == checkpoint.rsplit("/", 1)[-1]


def test_far_oversized_message_is_dropped_without_hurting_the_server(served):
    client = served.raw(timeout_ms=1500)
    try:
        client.socket.send(b"\0" * (2 * LIMIT + 1))  # beyond ZeroMQ's hard cap: the peer is disconnected
        with pytest.raises(zmq.Again):  # no reply, by design
            client.socket.recv()
    finally:
        client.close()
    fresh = served.raw()
    try:
        assert fresh.call("ping", with_data=False)["status"] == "ok"
    finally:
        fresh.close()


def test_kill_allowed_stops_the_server(served_policy):
    server, thread = start_server(served_policy, allow_kill=True)
    client = RawClient(server.port, token=None)
    try:
        assert client.call("kill", with_data=False)["status"] == "ok"
        thread.join(timeout=10)
        assert not thread.is_alive()
    finally:
        client.close()
        stop_server(server, thread)


def test_server_without_default_embodiment_asks_for_one(served_policy, observation):
    server, thread = start_server(served_policy)
    client = RawClient(server.port, token=None)
    try:
        reply = client.call("get_action", {"observation": observation})
        assert "no default" in reply["error"] and "unitree_g1" in reply["error"]
        action, info = client.call("get_action", {"observation": observation,
                                                  "options": {"embodiment": EMBODIMENT, "seed": 1, "extra": 1}})
        assert info["embodiment"] == EMBODIMENT and info["ignored_options"] == ["extra"]
    finally:
        client.close()
        stop_server(server, thread)


# ------------------------------------------------------------------------------------------ load
def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_1000_sequential_requests_with_flat_memory(raw, observation):
    def burst(n_actions: int, n_pings: int):
        for i in range(n_actions):
            action, _ = raw.call("get_action", {"observation": observation, "options": {"seed": i}})
            assert action
        for _ in range(n_pings):
            assert raw.call("ping", with_data=False)["status"] == "ok"

    burst(20, 50)  # warm-up: caches, ORT arenas, zmq buffers
    gc.collect()
    rss0 = rss_bytes()
    tracemalloc.start()
    snap0 = tracemalloc.take_snapshot()
    burst(200, 800)
    gc.collect()
    grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(snap0, "filename"))
    tracemalloc.stop()
    rss_growth = rss_bytes() - rss0
    assert grown < 512 << 10, f"Python heap grew {grown} B over 1,000 requests"
    assert rss_growth < 32 << 20, f"RSS grew {rss_growth / 2**20:.1f} MiB over 1,000 requests"


def test_two_clients_at_once_get_their_own_answers(served, observation, reference_policy):
    seeds = {0: [21, 22, 23], 1: [31, 32, 33]}
    want = {s: reference_policy.predict(observation, embodiment=EMBODIMENT, seed=s) for v in seeds.values() for s in v}
    got, errors = {}, []
    start = threading.Barrier(2)

    def worker(index: int):
        client = served.raw()
        try:
            start.wait(timeout=10)
            for seed in seeds[index]:
                action, info = client.call("get_action", {"observation": observation, "options": {"seed": seed}})
                got[seed] = (action, info["seed"])
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in seeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert set(got) == set(want)
    for seed, (action, echoed) in got.items():
        assert echoed == seed
        assert_same_actions(action, want[seed])


def test_big_endian_noise_is_accepted_like_big_endian_state(served_policy, observation):
    """issue 17, item 18: float32 noise in the other byte order gives the same actions, not a refusal."""
    h, da = served_policy.manifest.dims["H"], served_policy.manifest.dims["Da"]
    noise = np.random.default_rng(5).standard_normal((1, h, da), dtype=np.float32)
    want = served_policy.predict(observation, embodiment=EMBODIMENT, noise=noise)
    got = served_policy.predict(observation, embodiment=EMBODIMENT, noise=noise.astype(">f4"))
    assert_same_actions(got, want)
