"""Writing and reading artefacts: one atomic writer and one JSON reader for every file we produce.

Readers never see a half-written manifest, tokenizer file, report, plan or sidecar: each is written to a
temporary name in the same folder and renamed into place (``os.replace`` is atomic on POSIX). Files get
the normal permissions of the user's umask (typically 0644), not ``mkstemp``'s private 0600, so a robot
service running as another user can read a copied export. Stdlib only.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import Gr00tTrtError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part."""
    path = Path(path)
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


def read_json(path: str | Path, what: str, error: type[Gr00tTrtError] = Gr00tTrtError) -> Any:
    """Parse a JSON file, failing with one line that names the file and says what it should have been."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"cannot read {what} {path}: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}) — expected the {what}") from None
