"""Shape buckets and the buffer bookkeeping of one bucket.

The sequence length S is padded UP to a multiple of ``bucket`` by right padding (pad token, attention
mask False, image mask False) so engines and captured programs see few distinct shapes. This is exact:
the LLM is causal, so tokens on the right cannot change earlier positions, and the DiT masks padded keys.
Batch size and image layout are used as given; a bucket is keyed by (B, padded S, image sizes in order).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .backend import Backend, Buffer, Copy


@dataclass(frozen=True)
class BucketKey:
    """What makes a set of buffers and programs reusable."""

    batch: int
    seq: int
    image_sizes: tuple[tuple[int, int], ...]  # (h, w) of every image, in LLM order


def padded_length(length: int, bucket: int, limit: Sequence[int] | None = None) -> int:
    """``length`` rounded up to a multiple of ``bucket``, kept within the export's [min, max] of S."""
    padded = -(-length // bucket) * bucket
    if limit is not None:
        padded = max(min(padded, limit[-1]), limit[0], length)
    return padded


def pad_right(dst: np.ndarray, src: np.ndarray, fill: int | bool) -> None:
    """Copy ``src`` [B, S] into the left of ``dst`` [B, S'] and fill the rest; allocates nothing."""
    seq = src.shape[1]
    np.copyto(dst[:, :seq], src, casting="same_kind")
    dst[:, seq:] = fill


def fill_image_index(image_mask: np.ndarray, out: np.ndarray) -> None:
    """Row of image_embeds [T, E] for every position: the k-th image token (row-major over [B, S], i.e.
    LLM order) reads row k; other positions read a valid row that the backbone ignores."""
    flat = out.reshape(-1)
    np.copyto(flat, image_mask.reshape(-1))
    np.add.accumulate(flat, out=flat)  # (np.cumsum with dtype= leaks a little per call in numpy 2)
    flat -= 1
    np.maximum(flat, 0, out=flat)


def image_groups(sizes: Sequence[tuple[int, int]]) -> dict[tuple[int, int], list[int]]:
    """LLM positions of the images of each size (one vision call per size), in first-seen order."""
    groups: dict[tuple[int, int], list[int]] = {}
    for position, size in enumerate(sizes):
        groups.setdefault(tuple(size), []).append(position)
    return groups


def row_runs(sizes: Sequence[tuple[int, int]], tokens: dict[tuple[int, int], int]) -> list[tuple[tuple[int, int], int, int, int]]:
    """How to assemble image_embeds [T, E] in LLM order from per-size vision outputs [n, t, E]:
    (size, source row, destination row, rows) runs, consecutive same-size images merged into one."""
    runs: list[list] = []
    taken = dict.fromkeys(tokens, 0)  # rows already used of each size's output
    row = 0
    for size in sizes:
        size = tuple(size)
        t = tokens[size]
        last = runs[-1] if runs else None
        if last is not None and last[0] == size and last[1] + last[3] == taken[size]:
            last[3] += t
        else:
            runs.append([size, taken[size], row, t])
        taken[size] += t
        row += t
    return [tuple(r) for r in runs]  # type: ignore[misc]


class BufferSet:
    """The buffers of one bucket, by value name, with one buffer per dtype a value is consumed in.

    A value is either a host input (filled by the Pipeline each control step; all its dtype variants are
    host buffers filled on the host) or produced on the device by a graph or a Copy (its other-dtype
    variants are refreshed by a Copy step right before a consumer needs them).
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._values: dict[str, dict[np.dtype, Buffer]] = {}
        self._host_inputs: set[str] = set()
        self._stale: set[tuple[str, np.dtype]] = set()

    def input(self, value: str, shape: Sequence[int], dtype: np.dtype) -> Buffer:
        """Register a value the host writes."""
        self._host_inputs.add(value)
        return self._new(value, shape, dtype, host=True)

    def output(self, value: str, shape: Sequence[int], dtype: np.dtype, *, host: bool = False) -> Buffer:
        """The buffer a producer writes ``value`` into (reused when the value is produced again, e.g.
        per denoising step); its other-dtype variants become stale."""
        dtype, shape = np.dtype(dtype), tuple(int(s) for s in shape)
        if value in self._values:
            buf = self.canonical(value)
            if (buf.shape, buf.dtype) != (shape, dtype):
                raise ValueError(f"value {value!r} produced as {shape} {dtype} after {buf.shape} {buf.dtype}")
        else:
            buf = self._new(value, shape, dtype, host=host)
        self._stale.update((value, d) for d in self._values[value] if d != dtype)
        return buf

    def consume(self, value: str, dtype: np.dtype, steps: list, *, host: bool = False) -> Buffer:
        """A buffer holding ``value`` in ``dtype``; appends a converting Copy to ``steps`` when needed."""
        dtype = np.dtype(dtype)
        if value not in self._values:
            raise KeyError(f"value {value!r} is consumed before it is produced")
        variants = self._values[value]
        if dtype in variants:
            buf = variants[dtype]
            if (value, dtype) in self._stale:
                steps.append(Copy(self.canonical(value), buf))
                self._stale.discard((value, dtype))
            return buf
        source = self.canonical(value)
        buf = self._new(value, source.shape, dtype, host=host or value in self._host_inputs)
        if value not in self._host_inputs:
            steps.append(Copy(source, buf))
        return buf

    def canonical(self, value: str) -> Buffer:
        """The first buffer of a value: what its producer writes."""
        return next(iter(self._values[value].values()))

    def variants(self, value: str) -> list[Buffer]:
        return list(self._values.get(value, {}).values())

    def all(self) -> list[Buffer]:
        return [b for v in self._values.values() for b in v.values()]

    def release(self) -> None:
        self.backend.release(*self.all())
        self._values.clear()

    def _new(self, value: str, shape: Sequence[int], dtype: np.dtype, *, host: bool) -> Buffer:
        dtype = np.dtype(dtype)
        buf = self.backend.allocate(value if not self._values.get(value) else f"{value}:{dtype.name}", shape, dtype, host=host)
        self._values.setdefault(value, {})[dtype] = buf
        return buf
