"""Writing and reading artefacts: one atomic writer and one JSON reader for every file we produce.

Readers never see a half-written manifest, tokenizer file, report, plan or sidecar: each is written to a
temporary name in the same folder and renamed into place (``os.replace`` is atomic on POSIX). Files get
the normal permissions of the user's umask (typically 0644), not ``mkstemp``'s private 0600, so a robot
service running as another user can read a copied export. Stdlib only.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Any

from .errors import Gr00tTrtError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _refuse_special(path: Path, what: str, want: str) -> None:
    """Fail unless ``path`` is absent or of the wanted kind (``file`` or ``folder``)."""
    if not (path.exists() or path.is_symlink()):
        return
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise Gr00tTrtError(f"{what} {path}: {exc.strerror}") from None
    if want == "file" and not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a device, FIFO or socket"
        raise Gr00tTrtError(f"{what} {path}: it is {kind} — expected a path for a new or existing file")
    if want == "folder" and not stat.S_ISDIR(mode):
        raise Gr00tTrtError(f"{what} {path}: it is not a folder — expected a folder to write files into")


def _probe_folder(path: Path, folder: Path, what: str) -> None:
    """Create and remove a file in ``folder``: the only test of writability that root and /proc cannot fool."""
    if not folder.is_dir():
        raise Gr00tTrtError(f"{what} {path}: folder {folder} does not exist — create it first")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".gr00t-trt-probe.")
    except OSError as exc:
        raise Gr00tTrtError(f"{what} {path}: cannot create a file in {folder} ({exc.strerror})") from None
    os.close(fd)
    os.unlink(probe)


def check_output(path: str | Path, what: str = "output") -> Path:
    """Fail in one line, before any work, unless ``path`` can become a file we write: its folder exists
    (missing folders are never created, by any command: a typo should not make a tree) and takes a new
    file, and ``path`` is absent or a regular file — never a device, FIFO, socket or folder."""
    path = Path(path)
    _refuse_special(path, what, "file")
    _probe_folder(path, path.parent, what)
    return path


def check_output_folder(path: str | Path, what: str = "output") -> Path:
    """Like ``check_output`` for a folder we write files into: a writable folder, or absent inside one."""
    path = Path(path)
    _refuse_special(path, what, "folder")
    _probe_folder(path, path if path.is_dir() else path.parent, what)
    return path


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part.
    Refuses to replace what is not a regular file (a device node, a FIFO, a folder)."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise Gr00tTrtError(f"cannot write {path}: it exists and is not a regular file (a device, FIFO, socket "
                            "or folder) — expected a file path")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, value: Any) -> Path:
    """Pretty JSON (2-space indent, trailing newline), written atomically."""
    return write_atomic(path, json.dumps(value, indent=2) + "\n")


#: A JSON artefact of ours (manifest, sidecar, statistics, tokenizer files) is far below this; a larger
#: file is refused before it is read, so a hostile one cannot cost memory.
JSON_MAX_BYTES = 256 * 1024 * 1024
#: Deeper nesting than any file of ours has; Python's parser would hit its recursion limit near 1000.
JSON_MAX_DEPTH = 64


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def json_depth(text: str) -> int:
    """Deepest bracket nesting of a JSON text, strings skipped (regular expressions, no recursion)."""
    depth = deepest = 0
    for char in _NOT_BRACKET.sub("", _JSON_STRING.sub("", text)):
        depth += 1 if char in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def parse_json(
    text: str, source: str, what: str, error: type[Gr00tTrtError] = Gr00tTrtError, expect: type | None = None
) -> Any:
    """Parse JSON text bounded in depth, failing with one line naming ``source``; ``expect`` checks the top type."""
    if json_depth(text) > JSON_MAX_DEPTH:
        raise error(f"{source} nests deeper than {JSON_MAX_DEPTH} levels — expected the {what}")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{source} is not valid JSON ({exc.msg} at line {exc.lineno}) — expected the {what}") from None
    except RecursionError:
        raise error(f"{source} nests too deeply to parse — expected the {what}") from None
    if expect is not None and not isinstance(value, expect):
        wanted = {dict: "an object", list: "an array"}.get(expect, expect.__name__)
        raise error(f"{source} holds a JSON {type(value).__name__}, expected {wanted} (the {what})")
    return value


def read_json(
    path: str | Path,
    what: str,
    error: type[Gr00tTrtError] = Gr00tTrtError,
    expect: type | None = None,
    max_bytes: int = JSON_MAX_BYTES,
) -> Any:
    """Parse a JSON file, failing with one line that names the file and says what it should have been.

    Bounded: a file over ``max_bytes`` or nested deeper than ``JSON_MAX_DEPTH`` is refused before parsing,
    invalid UTF-8 is an ordinary error, and ``expect`` (e.g. ``dict``) checks the top-level type.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise error(f"{what} {path} is {size:,} bytes, over the {max_bytes:,}-byte limit for a JSON file")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"cannot read {what} {path}: {exc}") from None
    return parse_json(text, str(path), what, error, expect)
