"""The atomic writer and the JSON reader every artefact goes through."""

from __future__ import annotations

import json
import os
import stat

import pytest

from gr00t_trt.base.errors import Gr00tTrtError, ManifestError
from gr00t_trt.base.files import check_output, check_output_folder, read_json, write_atomic, write_json


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


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"[" * 100_000, "nests deeper than"),
        (b'{"a": ' * 5_000 + b"1" + b"}" * 5_000, "nests deeper than"),
        (b"\xff\xfe not utf-8", "cannot read"),
        (b"[]", "expected an object"),
        (b'"x"', "expected an object"),
    ],
)
def test_read_json_refuses_hostile_files_in_one_line(tmp_path, content, fragment):
    path = tmp_path / "sidecar.json"
    path.write_bytes(content)
    with pytest.raises(Gr00tTrtError, match=fragment) as info:
        read_json(path, "engine sidecar", expect=dict)
    assert "\n" not in str(info.value)


def test_read_json_depth_ignores_brackets_inside_strings(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"note": "[" * 1000, "x": [[1]]}))
    assert read_json(path, "manifest", expect=dict)["x"] == [[1]]


def test_read_json_refuses_a_file_over_its_size_bound(tmp_path):
    path = tmp_path / "big.json"
    path.write_text("[" + "0," * 1000 + "0]")
    with pytest.raises(Gr00tTrtError, match="over the 100-byte limit"):
        read_json(path, "statistics", max_bytes=100)


# ------------------------------------------------------------------------------------------ issue 17, items 10 and 17
def special_files(tmp_path):
    """A FIFO, and a character device when running as root (mknod needs it): never real /dev nodes."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    made = [fifo]
    if os.geteuid() == 0:
        device = tmp_path / "null-device"
        os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        made.append(device)
    return made


def test_the_atomic_writer_never_replaces_a_device_or_fifo(tmp_path):
    for path in special_files(tmp_path):
        kind = stat.S_IFMT(path.lstat().st_mode)
        with pytest.raises(Gr00tTrtError, match=f"cannot write {path}: it exists and is not a regular file"):
            write_atomic(path, b"data")
        assert stat.S_IFMT(path.lstat().st_mode) == kind  # still the node it was
    with pytest.raises(Gr00tTrtError, match="not a regular file"):
        write_json(tmp_path, {"x": 1})


def test_output_paths_are_checked_before_any_work(tmp_path):
    for path in special_files(tmp_path):
        with pytest.raises(Gr00tTrtError, match=f"--out {path}: it is a device, FIFO or socket"):
            check_output(path, "--out")
    with pytest.raises(Gr00tTrtError, match="it is a folder"):
        check_output(tmp_path, "--json")
    with pytest.raises(Gr00tTrtError, match=r"folder .*nowhere does not exist — create it first"):
        check_output(tmp_path / "nowhere" / "r.json", "--json")
    if os.path.isdir("/proc"):
        with pytest.raises(Gr00tTrtError, match=r"--json /proc/r.json: cannot create a file in /proc"):
            check_output("/proc/r.json", "--json")
    assert check_output(tmp_path / "ok.json", "--json") == tmp_path / "ok.json"
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(("fifo", "null"))) == []  # no probe left


def test_output_folders_are_checked_before_any_work(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(Gr00tTrtError, match="it is not a folder"):
        check_output_folder(tmp_path / "file", "--record")
    with pytest.raises(Gr00tTrtError, match="does not exist"):
        check_output_folder(tmp_path / "a" / "b", "--record")
    assert check_output_folder(tmp_path / "new", "--record") == tmp_path / "new"
    assert check_output_folder(tmp_path, "--record") == tmp_path
