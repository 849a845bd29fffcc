"""A module node without parameters, so that a model's state_dict keys nest exactly as a checkpoint's."""

from __future__ import annotations

from torch import nn


class Holder(nn.Module):
    """A parameter-free node that only exists so that state_dict keys get the checkpoint's nesting."""

    def __init__(self, **children: nn.Module):
        super().__init__()
        for name, child in children.items():
            self.add_module(name, child)
