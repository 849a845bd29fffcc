"""The light policy client (numpy + msgpack + pyzmq only): ``from gr00t_trt.client import PolicyClient``."""

from __future__ import annotations

from .serve.client import PolicyClient
from .serve.wire import ModalityConfig

__all__ = ["ModalityConfig", "PolicyClient"]
