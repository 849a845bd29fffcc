"""The robot side of a policy: ``ChunkRunner`` turns action chunks into one action per control tick, with the
next chunk computed in the background. numpy only; works with an in-process ``Policy`` or a ``PolicyClient``."""

from .runner import ChunkRecord, ChunkRunner

__all__ = ["ChunkRecord", "ChunkRunner"]
