"""Observations for `run`, `verify`, the demo and benchmarks: random ones shaped for an embodiment, or
ones read from an ``.npz`` file in Isaac-GR00T's flat form. numpy only (robot side).
"""

from __future__ import annotations

import io
import math
import os
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..base.errors import ObservationError
from ..base.files import write_atomic
from .images import processed_image_size

#: raw camera frames tried, in order, to hit a requested preprocessed size
_CANDIDATE_FRAMES = ((480, 640), (256, 256), (240, 320), (224, 224), (256, 320), (720, 1280), (360, 640))

_ZIP_MAGIC = b"PK\x03\x04"
_NPY_MAGIC = b"\x93NUMPY"

INSTRUCTIONS = ("pick up the apple", "open the top drawer of the cabinet and put the red cup inside it")

#: file suffix of a saved observation (`--obs`, `run --record`, `export --calib`)
OBSERVATION_SUFFIX = ".npz"
#: what the arrays of one observation file may declare in all (a 480x640 frame is 0.9 MiB): checked from
#: the npy headers before anything is decompressed, so a small file cannot ask for gigabytes
MAX_OBSERVATION_BYTES = 256 << 20


def frame_for(size: tuple[int, int], spec, output_size: Callable[[int, int], tuple[int, int]] | None = None
              ) -> tuple[int, int]:
    """A raw camera frame size that the image chain turns into ``size`` (e.g. 252x336 ← 480x640 for N1.6's,
    256x352 ← 480x640 for N1.7's). ``output_size(h, w)`` is the chain's size function (a preprocessor's
    ``image_transform.output_size``); without it, N1.6's chain with ``spec``'s settings."""
    if output_size is None:
        def output_size(height: int, width: int) -> tuple[int, int]:
            return processed_image_size(height, width, spec)
    for frame in (*_CANDIDATE_FRAMES, tuple(size)):
        if tuple(output_size(frame[0], frame[1])) == tuple(size):
            return frame
    raise ObservationError(f"no camera frame size found that preprocesses to {size[0]}x{size[1]}")


def synthetic_observation(
    processor,
    embodiment: str,
    *,
    seed: int = 0,
    batch: int = 1,
    image_sizes: Sequence[tuple[int, int]] | None = None,
    instruction: str | None = None,
) -> dict:
    """A random observation in the nested Isaac-GR00T form for ``embodiment``.

    ``processor`` is a ProcessorSpec (N1.6's image chain sizes the frames) or a runtime preprocessor of any
    family (its ``spec`` and its own ``image_transform``). Every view gets ``num_frames`` frames (two for
    DROID-like N1.7 embodiments), camera ``i`` a frame that preprocesses to ``image_sizes[i % len]`` (by
    default a 480x640 camera); states are drawn inside the statistics' min/max.
    """
    transform = getattr(processor, "image_transform", None)
    output_size = transform.output_size if transform is not None else None
    processor = getattr(processor, "spec", processor)
    spec = processor.embodiment(embodiment)
    rng = np.random.default_rng(seed)
    video = {}
    for i, key in enumerate(spec.video_keys):
        h, w = (480, 640) if image_sizes is None else frame_for(image_sizes[i % len(image_sizes)], processor, output_size)
        video[key] = rng.integers(0, 256, size=(batch, spec.num_frames, h, w, 3), dtype=np.uint8)
    state = {}
    for key in spec.state_keys:
        norm = spec.state_norm[key]
        low, high = np.asarray(norm.min, np.float32), np.asarray(norm.max, np.float32)
        u = rng.random((batch, len(spec.state_delta_indices), norm.dim), dtype=np.float32)
        state[key] = (low + u * (high - low)).astype(np.float32)
    text = instruction if instruction is not None else INSTRUCTIONS[seed % len(INSTRUCTIONS)]
    return {"video": video, "state": state, "language": {spec.language_key: [[text] for _ in range(batch)]}}


def _declared_bytes(archive: zipfile.ZipFile, path: Path) -> int:
    """Bytes the members of an .npz declare in their npy headers (read alone, before any array)."""
    total = 0
    for info in archive.infolist():
        try:
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(member)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise ObservationError(f"{path}: member {info.filename!r} is not a readable .npy ({exc})") from None
        total += math.prod(shape) * dtype.itemsize
    return total


def load_observation(path: str | Path, max_bytes: int = MAX_OBSERVATION_BYTES) -> dict:
    """Read a flat observation (``video.<k>``, ``state.<k>``, ``annotation.*``) from an .npz file.

    Text arrays are stored as numpy unicode arrays, so nothing is unpickled. The shapes the arrays
    declare are summed first: more than ``max_bytes`` is refused before anything is decompressed.
    """
    path = Path(path)
    if not path.is_file():
        raise ObservationError(f"observation file not found: {path}")
    with path.open("rb") as f:
        magic = f.read(6)
    if not magic.startswith(_ZIP_MAGIC):
        kind = "a single .npy array" if magic.startswith(_NPY_MAGIC) else "not a zip archive"
        raise ObservationError(
            f"{path} is not an .npz observation ({kind}) — expected a file written by numpy.savez or "
            "gr00t_trt.processing.observations.save_observation"
        )
    obs = {}
    try:
        with zipfile.ZipFile(path) as archive:
            declared = _declared_bytes(archive, path)
        if declared > max_bytes:
            raise ObservationError(f"{path}: its arrays declare {declared:,} bytes, over the {max_bytes:,}-byte limit "
                                   "of an observation — expected camera frames and states of one control step")
        with np.load(path, allow_pickle=False) as data:
            for key in data.files:
                try:
                    obs[key] = data[key]
                except ValueError:
                    raise ObservationError(
                        f"{path}: array {key!r} holds Python objects — only numeric and string arrays are read "
                        "(Python objects are never loaded); save text as a numpy string array"
                    ) from None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ObservationError(f"{path} is not a readable .npz observation ({type(exc).__name__}) — re-save it") from None
    for key, value in obs.items():
        if value.dtype.kind == "U":
            obs[key] = [str(s) for s in np.atleast_1d(value)]
    return obs


def save_observation(path: str | Path, obs: dict) -> None:
    """Write a nested or flat observation as a flat .npz that `load_observation` reads back."""
    flat = {}
    if "video" in obs:
        flat.update({f"video.{k}": v for k, v in obs["video"].items()})
        flat.update({f"state.{k}": v for k, v in obs["state"].items()})
        flat.update({k: np.array([t[0] if isinstance(t, list) else t for t in v]) for k, v in obs["language"].items()})
    else:
        flat = {k: (np.array(list(v)) if isinstance(v, (list, tuple)) else v) for k, v in obs.items()}
    buffer = io.BytesIO()
    np.savez(buffer, **flat)
    write_atomic(path, buffer.getvalue())  # exactly ``path`` (np.savez would append .npz to a bare name)


def record_observation(folder: str | Path, obs: dict, embodiment: str) -> Path:
    """Save one observation a robot stack sent as ``folder/<embodiment>/<time>-<n>.npz`` (the ``--obs``
    format), atomically, for ``export --calib folder``."""
    target = Path(folder) / embodiment
    target.mkdir(parents=True, exist_ok=True)
    stem = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    fd, tmp = tempfile.mkstemp(dir=target, prefix=f".{stem}.", suffix=OBSERVATION_SUFFIX)
    os.close(fd)
    try:
        save_observation(tmp, obs)
        for n in range(1_000_000):
            path = target / f"{stem}-{n:06d}{OBSERVATION_SUFFIX}"
            if not path.exists():
                os.replace(tmp, path)
                return path
        raise ObservationError(f"{target}: no free file name for {stem}")
    finally:
        Path(tmp).unlink(missing_ok=True)
