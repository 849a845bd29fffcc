"""--obs files: anything but a plain .npz is one line naming the file, never numpy's pickle advice (issue 7: 11)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from gr00t_trt.errors import ObservationError
from gr00t_trt.observations import load_observation


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
