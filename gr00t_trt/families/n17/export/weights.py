"""Wrappers own their parameters: a cast of a wrapper (``.half()`` for a precision export) must never
change the loaded model, which the exporter still needs in fp32 for the parity checks."""

from __future__ import annotations

import copy

import torch
from torch import nn


def detached(module: nn.Module, dtype: torch.dtype | None = None) -> nn.Module:
    """A copy of ``module`` whose parameters and buffers are new tensors over the same storage (no
    copy when ``dtype`` is None or already theirs), floating ones cast to ``dtype``, frozen, in eval."""
    memo: dict[int, object] = {}
    for tensor in (*module.parameters(), *module.buffers()):
        value = tensor.detach()
        if dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        memo[id(tensor)] = nn.Parameter(value, requires_grad=False) if isinstance(tensor, nn.Parameter) else value
    return copy.deepcopy(module, memo).requires_grad_(False).eval()
