"""--obs files: anything but a plain .npz is one line naming the file, never numpy's pickle advice (issue 7: 11)."""

from __future__ import annotations

import io
import pickle
import zipfile

import numpy as np
import pytest

from gr00t_trt.base.errors import ObservationError
from gr00t_trt.processing.observations import load_observation, save_observation


def _pickle(path):
    path.write_bytes(pickle.dumps({"video.front": [1, 2, 3]}))


def _npy(path):
    np.save(path.with_suffix(".npy"), np.zeros(3))
    path.with_suffix(".npy").rename(path)


def _objects(path):
    with path.open("wb") as f:
        np.savez(f, **{"state.eef": np.array([{"x": 1}], dtype=object)})


def _broken_zip(path):
    path.write_bytes(b"PK\x03\x04" + b"\0" * 40)


@pytest.mark.parametrize(
    ("write", "match"),
    [
        (_pickle, r"is not an \.npz observation \(not a zip archive\)"),
        (lambda p: p.write_text("video.front,1,2,3\n"), r"is not an \.npz observation \(not a zip archive\)"),
        (_npy, r"is not an \.npz observation \(a single \.npy array\)"),
        (_objects, r"array 'state\.eef' holds Python objects"),
        (_broken_zip, r"is not a readable \.npz observation \(BadZipFile\)"),
    ],
)
def test_non_npz_obs_file_is_one_line_naming_the_file(tmp_path, write, match):
    path = tmp_path / "obs.npz"
    write(path)
    with pytest.raises(ObservationError, match=match) as info:
        load_observation(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    assert "allow_pickle" not in message and "pickled" not in message


def test_plain_npz_still_loads(tmp_path):
    path = tmp_path / "obs.npz"
    np.savez(path, **{"video.front": np.zeros((1, 1, 4, 4, 3), np.uint8), "annotation.task": np.array(["go"])})
    obs = load_observation(path)
    assert obs["annotation.task"] == ["go"] and obs["video.front"].shape == (1, 1, 4, 4, 3)


# ------------------------------------------------------------------------------------------ issue 17, items 14 and 18
def npz_declaring(path, shape, dtype="<u1", payload=b""):
    """An .npz whose member's npy header declares ``shape`` but holds only ``payload`` (deflated)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": dtype, "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("video.ego_view.npy", header.getvalue() + payload)
    return path


@pytest.mark.parametrize("shape", [(2**40,), (1, 1, 26754, 26754, 3)])
def test_declared_sizes_are_checked_before_anything_is_decompressed(tmp_path, shape, monkeypatch):
    path = npz_declaring(tmp_path / "bomb.npz", shape, payload=b"\0" * 4096)
    monkeypatch.setattr(np, "load", lambda *a, **k: pytest.fail("np.load ran before the declared sizes were checked"))
    with pytest.raises(ObservationError, match=r"bomb.npz: its arrays declare [\d,]+ bytes, over the 268,435,456-byte"):
        load_observation(path)


def test_save_observation_writes_exactly_the_name_given(tmp_path):
    save_observation(tmp_path / "start", {"state.x": np.zeros((1, 1, 2), np.float32), "task": ["go"]})
    assert [p.name for p in tmp_path.iterdir()] == ["start"]
    assert load_observation(tmp_path / "start")["task"] == ["go"]
