"""What one reference control step gives verify, whatever the family: the reference's intermediate values
in the shapes the exported graphs exchange, so every level of ``verify`` compares like with like."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ReferenceCase:
    """One control step of the unoptimised PyTorch reference (float32 numpy)."""

    image_rows: dict[str, np.ndarray]  # each vision output the backbone reads, [T, X] in LLM order
    backbone_features: np.ndarray  # [B, S, E]: the backbone graph's output
    steps: list[np.ndarray]  # the actions before each denoising step and after the last: x_0 = noise … x_N
    action_pred: np.ndarray  # [B, H, Da] normalised, padded (== steps[-1])
