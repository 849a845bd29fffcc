"""N1.7's quantisation plans as data (the vocabulary of ``families/n16/fp8_plan.py``)."""

from __future__ import annotations

FP8_PLAN: dict[str, tuple[str, ...]] = {}
FP8_KEEP: dict[str, tuple[str, ...]] = {}
INT8_PLAN: dict[str, tuple[str, ...]] = {}
INT8_KEEP: dict[str, tuple[str, ...]] = {}
