"""The ``gr00t-trt`` command line: thin commands over the library, rendering in ``render.py``.

A leaf of the package: nothing in ``gr00t_trt`` imports it. Each command module registers its commands
on ``app`` when imported here.
"""

from __future__ import annotations

# importing a command module registers its commands on ``app``
from . import bench, commands, engines, selftest, serve  # noqa: F401
from .app import app, main

__all__ = ["app", "main"]
