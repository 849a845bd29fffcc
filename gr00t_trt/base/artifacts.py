"""Publishing artefact folders (exports, synthetic checkpoints) safely.

Every writer builds its folder under a hidden ``.NAME.partial-XXXX`` sibling, locked for as long as the
writer runs (``fcntl.flock`` on a ``.lock`` file next to it), and renames it into place only when it is
complete. This module owns the rules around that:

* ``--force`` replaces only a folder this tool made (recognised by a caller-supplied check) or an
  empty one; anything else is refused with one line, so a typo never deletes someone's data;
* final artefacts get ordinary permissions respecting the umask (0755 / 0644 with umask 022), not the
  0700 / 0600 of temporary files, so a robot service running as another user can read them;
* partial folders left by killed writers (older than ``STALE_AFTER_S`` and not locked) are removed at the
  next write into the same parent folder, and reported.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .errors import Gr00tTrtError

#: a partial folder untouched for this long, and not locked by a running writer, is abandoned
STALE_AFTER_S = 300.0
LOCK_SUFFIX = ".lock"

Recognise = Callable[[Path], bool]
Report = Callable[[str, str], None]  # (subject, status), like the export progress callback


def current_umask() -> int:
    """The process umask (read by setting and restoring it; there is no read-only call)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_default_permissions(folder: Path) -> None:
    """chmod a finished tree to what ``mkdir``/``open`` would have given it: 0777/0666 minus the umask."""
    mask = current_umask()
    dir_mode, file_mode = 0o777 & ~mask, 0o666 & ~mask
    os.chmod(folder, dir_mode)
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            os.chmod(os.path.join(root, name), dir_mode)
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, file_mode)


def is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink() and not any(path.iterdir())


def check_replaceable(out: Path, force: bool, recognise: Recognise, what: str, error: type[Gr00tTrtError]) -> None:
    """Refuse, before any work, to write ``out`` unless it is free, or ``force`` is given and ``out`` is an
    empty folder or one that ``recognise`` accepts as ``what`` (e.g. "gr00t-trt export")."""
    out = Path(out)
    resolved = out.resolve()
    try:
        cwd = Path.cwd().resolve()
    except FileNotFoundError:  # the current folder was deleted: it cannot be the target
        cwd = None
    if cwd is not None and cwd.is_relative_to(resolved):
        raise error(f"{out} is the current folder or contains it — choose another output folder")
    if not out.exists() and not out.is_symlink():
        return
    # what the folder is comes first: suggesting --force for a folder --force may not replace sends the user
    # round in a circle (a setuptools build/ after `pip install .`)
    if out.is_symlink() or not out.is_dir():
        raise error(f"{out} exists and is not a folder — choose another path (--force never replaces it)")
    if not (is_empty_dir(out) or recognise(out)):
        raise error(
            f"{out} exists and is not a {what} — choose another folder or remove it yourself "
            f"(--force replaces only a {what})"
        )
    if not force:
        raise error(f"{out} already exists — pass --force to replace it")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"received {signal.Signals(signum).name}")


class StagingFolder:
    """A locked ``.NAME.partial-XXXX`` folder next to ``out``, published by an atomic rename.

    While it exists, SIGTERM (``kill``, systemd, a container stop) interrupts like Ctrl-C, so the
    writer's ``except BaseException: discard()`` removes the partial folder and its lock in both cases."""

    def __init__(self, out: Path, report: Report | None = None) -> None:
        self.out = Path(out)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(self.out, report)
        self.path = Path(tempfile.mkdtemp(dir=self.out.parent, prefix=f".{self.out.name}.partial-"))
        self._lock_path = self.path.with_name(self.path.name + LOCK_SUFFIX)
        self._lock = open(self._lock_path, "w")  # noqa: SIM115 - held until publish/discard
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._sigterm = None  # the handler to restore (signals can only be set from the main thread)
        if threading.current_thread() is threading.main_thread():
            self._sigterm = signal.signal(signal.SIGTERM, _interrupt)

    def publish(self, force: bool, recognise: Recognise, what: str, error: type[Gr00tTrtError]) -> Path:
        """Give the tree normal permissions and rename it to ``out`` (replacing an allowed old folder)."""
        apply_default_permissions(self.path)
        if self.out.exists() or self.out.is_symlink():
            if not force:
                raise error(f"{self.out} appeared while writing — pass --force to replace it")
            check_replaceable(self.out, force, recognise, what, error)  # it may have changed meanwhile
            old = self.out.with_name(f".{self.out.name}.old-{os.getpid()}")
            os.replace(self.out, old)
            os.replace(self.path, self.out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.path, self.out)
        self._unlock()
        return self.out

    def discard(self) -> None:
        """Remove the partial folder (after an error or interrupt)."""
        shutil.rmtree(self.path, ignore_errors=True)
        self._unlock()

    def _unlock(self) -> None:
        if self._sigterm is not None:
            signal.signal(signal.SIGTERM, self._sigterm)
            self._sigterm = None
        if not self._lock.closed:
            self._lock_path.unlink(missing_ok=True)
            self._lock.close()


def _locked(lock_path: Path) -> bool:
    """True when a running writer holds ``lock_path``."""
    try:
        with open(lock_path) as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
            return False
    except FileNotFoundError:
        return False


def remove_stale_partials(out: Path, report: Report | None = None, *, older_than_s: float = STALE_AFTER_S) -> list[Path]:
    """Delete ``.NAME.partial-*`` folders (and their lock files) next to ``out`` that no running writer
    holds and that have not changed for ``older_than_s`` seconds; returns what was removed."""
    removed = []
    now = time.time()
    for path in Path(out).parent.glob(f".{Path(out).name}.partial-*"):
        if path.name.endswith(LOCK_SUFFIX):
            owner = path.with_name(path.name[: -len(LOCK_SUFFIX)])
            if not owner.exists() and not _locked(path):
                path.unlink(missing_ok=True)  # lock file whose partial folder is already gone
            continue
        if path.is_symlink() or not path.is_dir():
            continue
        lock = path.with_name(path.name + LOCK_SUFFIX)
        try:
            age = now - path.stat().st_mtime
        except FileNotFoundError:
            continue
        if age < older_than_s or _locked(lock):
            continue
        shutil.rmtree(path, ignore_errors=True)
        lock.unlink(missing_ok=True)
        removed.append(path)
        if report:
            report("stale partial folder", f"removed {path.name} (left by an interrupted run {age / 60:.0f} min ago)")
    return removed
