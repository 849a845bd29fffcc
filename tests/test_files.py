"""The atomic writer and the JSON reader every artefact goes through."""

from __future__ import annotations

import os
import stat

import pytest

from gr00t_trt.errors import ManifestError
from gr00t_trt.files import read_json, write_atomic, write_json


def test_atomic_write_replaces_whole_files_with_umask_permissions(tmp_path):
    path = tmp_path / "a.json"
    old = os.umask(0o022)
    try:
        write_json(path, {"x": 1})
    finally:
        os.umask(old)
    assert read_json(path, "thing") == {"x": 1}
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's private 0600
    write_atomic(path, b"[2]")
    assert read_json(path, "thing") == [2]
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temporary left behind


def test_a_failed_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "a.json"
    write_json(path, {"x": 1})
    with pytest.raises(TypeError):
        write_json(path, {"x": object()})
    assert read_json(path, "thing") == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_read_json_errors_are_one_line(tmp_path):
    with pytest.raises(ManifestError, match=r"export manifest not found: .*missing\.json"):
        read_json(tmp_path / "missing.json", "export manifest", ManifestError)
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(ManifestError, match=r"bad\.json is not valid JSON \(.* at line 1\) — expected the export manifest"):
        read_json(tmp_path / "bad.json", "export manifest", ManifestError)
