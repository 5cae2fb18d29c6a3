"""Generalised-mean (GeM) pooling with a fixed exponent, as used by the AGW baseline."""

from __future__ import annotations

import torch
from torch import nn


def gem_pool(x: torch.Tensor, p: float = 3.0, eps: float = 1e-12) -> torch.Tensor:
    """GeM over the spatial positions: `(mean(max(x, 0)^p) + eps)^(1/p)`.

    `x` is (B, C, H, W); returns (B, C). p = 1 is average pooling and p -> inf max pooling; the
    clamp keeps the fractional power defined (ResNet maps are non-negative after ReLU anyway).
    """
    pooled = x.clamp(min=0).pow(p).mean(dim=(2, 3))
    return (pooled + eps).pow(1.0 / p)


class GeM(nn.Module):
    """Module form of `gem_pool` with a fixed (not learned) exponent."""

    def __init__(self, p: float = 3.0, eps: float = 1e-12) -> None:
        super().__init__()
        self.p = float(p)
        self.eps = float(eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gem_pool(x, self.p, self.eps)

    def extra_repr(self) -> str:
        return f"p={self.p}, eps={self.eps}"
