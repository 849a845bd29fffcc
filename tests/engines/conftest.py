"""Fixtures of the engine tests: the stand-in installed as ``tensorrt``/``cuda.bindings.runtime``.

(This folder is a package, so this conftest never shadows another folder's ``conftest`` module.)
"""

from __future__ import annotations

import pytest
import standin


@pytest.fixture
def standin_trt():
    with standin.install() as state:
        yield state
