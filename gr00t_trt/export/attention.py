"""Scaled dot-product attention written as the chain both ONNX Runtime and TensorRT fuse.

``F.scaled_dot_product_attention`` exports (opset 21) as reshapes around a transposed K — Shape, Slice,
Concat, Reshape, Transpose, Reshape per call — with the scale split into two Muls on Q and K. Neither
runtime recognises that: ONNX Runtime runs the K transpose as a copy every call, and TensorRT's MHA
fusion looks for MatMul(Q, Kᵀ) → scale → (+ mask) → Softmax → MatMul(·, V). Written out here:

- Q is scaled first (a scalar Mul: ONNX Runtime folds it into FusedMatMul's alpha; in half precision the
  scores stay in range as SDPA's own ordering keeps them);
- Kᵀ is a plain Transpose of the last two axes, which ONNX Runtime folds into FusedMatMul (transB) and
  TensorRT into the GEMM;
- the additive mask is one Add; softmax over the last axis in the graph's compute dtype, as SDPA.

Being a module, its two matmuls carry the scope ``…attention`` in the exported graph, which is how the
fp8 plan (``quantize.node_role``) finds the attention matmuls.
"""

from __future__ import annotations

import torch
from torch import nn


class Attention(nn.Module):
    """softmax(q·kᵀ/√d + bias)·v for q [.., T, d], k/v [.., S, d], bias broadcastable to [.., T, S]."""

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None = None):
        scores = torch.matmul(q * q.shape[-1] ** -0.5, k.transpose(-1, -2))  # [.., T, S]
        if bias is not None:
            scores = scores + bias
        return torch.matmul(scores.softmax(dim=-1), v)  # [.., T, d]
