"""Publishing artefact folders: --force rules, permissions, stale partial folders, quiet export (issue 7: 4, 12, 13, 16)."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import stat
import time

import pytest
from typer.testing import CliRunner

from gr00t_trt.base.artifacts import StagingFolder, check_replaceable, current_umask, remove_stale_partials
from gr00t_trt.base.errors import CheckpointError, ExportError
from gr00t_trt.cli import app
from gr00t_trt.export import driver
from gr00t_trt.export.driver import ExportOptions, export_checkpoint, is_export
from gr00t_trt.families.n16.presets import preset_config
from gr00t_trt.families.n16.synthetic import make_header_only_checkpoint


def _modes(folder):
    """(mode of the folder, {mode of every entry below it})."""
    modes = {stat.S_IMODE(p.stat().st_mode) for p in folder.rglob("*")}
    return stat.S_IMODE(folder.stat().st_mode), modes


# ------------------------------------------------------------------------------------------ --force
def test_export_force_refuses_a_folder_that_is_not_an_export(tiny_checkpoint, tmp_path):
    out = tmp_path / "v"
    out.mkdir()
    (out / "important.txt").write_text("x")
    with pytest.raises(ExportError, match=r"exists and is not a gr00t-trt export — choose another folder"):
        export_checkpoint(tiny_checkpoint, out, ExportOptions(force=True))
    assert (out / "important.txt").read_text() == "x"


def test_export_into_the_current_folder_is_refused_before_any_work(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ExportError, match=r"is the current folder or contains it"):
        export_checkpoint(tiny_checkpoint, ".", ExportOptions(force=True))


def test_force_replaces_an_export_or_an_empty_folder_only(tmp_path):
    empty, export, other, file = tmp_path / "empty", tmp_path / "export", tmp_path / "other", tmp_path / "file"
    empty.mkdir()
    export.mkdir()
    (export / "manifest.json").write_text(json.dumps({"format": "gr00t-trt-export"}))
    other.mkdir()
    (other / "manifest.json").write_text(json.dumps({"format": "something-else"}))
    file.write_text("x")
    for ok in (empty, export):
        check_replaceable(ok, True, is_export, "gr00t-trt export", ExportError)
    for bad, match in ((other, "is not a gr00t-trt export"), (file, "is not a folder")):
        with pytest.raises(ExportError, match=match):
            check_replaceable(bad, True, is_export, "gr00t-trt export", ExportError)
    with pytest.raises(ExportError, match=r"already exists — pass --force to replace it"):
        check_replaceable(export, False, is_export, "gr00t-trt export", ExportError)
    for bad in (other, file):  # without --force too: what the folder is comes first, never "pass --force"
        with pytest.raises(ExportError, match=r"is not a (gr00t-trt export|folder) — choose another") as caught:
            check_replaceable(bad, False, is_export, "gr00t-trt export", ExportError)
        assert "pass --force" not in str(caught.value)


def test_publish_replaces_an_old_export_atomically(tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"format": "gr00t-trt-export"}))
    staging = StagingFolder(out)
    (staging.path / "new.txt").write_text("new")
    staging.publish(True, is_export, "gr00t-trt export", ExportError)
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["export"]  # no partial, lock or old folder left


def test_make_checkpoint_force_speaks_cli_and_spares_foreign_folders(tmp_path):
    out = tmp_path / "ckpt"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    runner = CliRunner()
    result = runner.invoke(app, ["make-checkpoint", str(out)])
    said = " ".join(result.output.split())
    assert result.exit_code == 1 and "is not a synthetic checkpoint" in said and "--force replaces only" in said, said
    assert "overwrite=True" not in result.output
    result = runner.invoke(app, ["make-checkpoint", str(out), "--force"])
    assert result.exit_code == 1, result.output
    assert "is not a synthetic checkpoint made by gr00t-trt make-checkpoint" in " ".join(result.output.split())
    assert (out / "keep.txt").read_text() == "mine"


def test_make_checkpoint_writes_into_an_empty_folder_without_force(tmp_path):
    out = tmp_path / "ckpt"
    out.mkdir()
    make_header_only_checkpoint(out, preset_config("tiny"))
    assert (out / "config.json").is_file()


def test_make_checkpoint_force_replaces_its_own_checkpoint(tmp_path):
    out = tmp_path / "ckpt"
    make_header_only_checkpoint(out, preset_config("tiny"))
    with pytest.raises(CheckpointError, match=r"already exists — pass --force"):
        make_header_only_checkpoint(out, preset_config("tiny"))
    make_header_only_checkpoint(out, preset_config("tiny"), overwrite=True)
    assert (out / "config.json").is_file()


# ------------------------------------------------------------------------------------------ permissions
def test_artefacts_get_umask_permissions_not_temporary_ones(tiny_checkpoint, tiny_export):
    mask = current_umask()
    for folder in (tiny_checkpoint, tiny_export):
        top, below = _modes(folder)
        assert top == 0o777 & ~mask
        assert below == {0o666 & ~mask}, folder  # every file (no sub-folders in either)


def test_permissions_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        out = make_header_only_checkpoint(tmp_path / "ckpt", preset_config("tiny"))
    finally:
        os.umask(old)
    assert _modes(out) == (0o750, {0o640})


# ------------------------------------------------------------------------------------------ stale partials
def _partial(parent, name, age_s):
    path = parent / name
    path.mkdir()
    (path / "half.onnx").write_text("x")
    past = time.time() - age_s
    os.utime(path, (past, past))
    return path


def test_stale_unlocked_partials_are_removed_and_reported(tmp_path):
    out = tmp_path / "export"
    stale = _partial(tmp_path, ".export.partial-dead", 3600)
    fresh = _partial(tmp_path, ".export.partial-young", 10)
    running = _partial(tmp_path, ".export.partial-live", 3600)
    other = _partial(tmp_path, ".another.partial-dead", 3600)
    (tmp_path / ".export.partial-gone.lock").write_text("")
    with open(tmp_path / ".export.partial-live.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a running export holds its lock
        reports = []
        removed = remove_stale_partials(out, lambda subject, status: reports.append((subject, status)))
    assert removed == [stale] and not stale.exists()
    assert not (tmp_path / ".export.partial-gone.lock").exists()  # orphan lock file of a vanished folder
    assert fresh.exists() and running.exists() and other.exists()
    assert reports and reports[0][0] == "stale partial folder" and ".export.partial-dead" in reports[0][1]


def test_next_export_cleans_stale_partials_through_progress(tiny_checkpoint, tmp_path, monkeypatch):
    stale = _partial(tmp_path, ".out.partial-killed", 3600)

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(driver, "_export_graphs", stop)
    reports = []
    with pytest.raises(KeyboardInterrupt):
        export_checkpoint(tiny_checkpoint, tmp_path / "out", progress=lambda n, s: reports.append((n, s)))
    assert not stale.exists()
    assert any(name == "stale partial folder" and "killed" in status for name, status in reports)
    assert list(tmp_path.iterdir()) == []  # the interrupted export cleaned its own partial folder and lock


# ------------------------------------------------------------------------------------------ stderr noise
def test_torchvision_skip_warnings_are_silenced():
    from torch.onnx._internal.exporter import _registration

    class Keep(logging.Handler):
        def __init__(self):
            super().__init__(logging.DEBUG)
            self.messages = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    logger, keep = logging.getLogger(_registration.__name__), Keep()
    logger.addHandler(keep)
    try:
        assert _registration._get_overload("torchvision::nms") is None  # where the ~30 lines per export come from
        logger.warning("something that matters")
    finally:
        logger.removeHandler(keep)
    assert keep.messages == ["something that matters"]  # only the irrelevant line is dropped


def test_sigterm_while_staging_cleans_up_like_sigint(tmp_path):
    """issue 17, item 18: SIGTERM during an export left the hidden partial folder and its .lock."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        import os, signal, time
        from pathlib import Path
        from gr00t_trt.base.artifacts import StagingFolder
        staging = StagingFolder(Path({str(tmp_path / "out")!r}))
        try:
            (staging.path / "graph.onnx").write_text("half")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except BaseException:
            staging.discard()
            raise
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "KeyboardInterrupt: received SIGTERM" in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == []  # no .out.partial-* folder, no .lock
