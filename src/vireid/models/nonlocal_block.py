"""Dot-product non-local block (Wang et al. 2018) in the form the AGW baseline uses."""

from __future__ import annotations

import torch
from torch import nn


class NonLocalBlock(nn.Module):
    """Residual self-attention over all positions: `z = x + W(f·g)`, `f = θᵀφ / N`.

    θ, φ, g are 1×1 convolutions from C to C' channels; W is a 1×1 convolution back to C followed
    by a BatchNorm whose weight and bias start at zero, so a fresh block is the identity and does
    not disturb ImageNet weights. AGW's reference code uses C' = 1 (`inter_channels=1`), the AGW
    paper C' = C/2.

    Because the attention is linear (no softmax), `(θᵀφ) g = θ (φᵀ g)`: we never build the
    (N, N) attention matrix and the cost is O(N·C'²) instead of O(N²·C').
    """

    def __init__(self, channels: int, inter_channels: int = 1) -> None:
        super().__init__()
        if inter_channels < 1:
            raise ValueError(f"inter_channels must be >= 1, got {inter_channels}")
        self.channels = channels
        self.inter_channels = inter_channels
        self.theta = nn.Conv2d(channels, inter_channels, kernel_size=1)
        self.phi = nn.Conv2d(channels, inter_channels, kernel_size=1)
        self.g = nn.Conv2d(channels, inter_channels, kernel_size=1)
        self.W = nn.Sequential(
            nn.Conv2d(inter_channels, channels, kernel_size=1),
            nn.BatchNorm2d(channels),
        )
        nn.init.zeros_(self.W[1].weight)
        nn.init.zeros_(self.W[1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        b, _, h, w = x.shape
        n = h * w
        theta = self.theta(x).flatten(2)                # (B, C', N)
        phi = self.phi(x).flatten(2)                    # (B, C', N)
        g = self.g(x).flatten(2)                        # (B, C', N)
        # (B, C', C') = Σ_j φ_j g_jᵀ / N; dividing first keeps fp16 (AMP) sums in range.
        context = (phi / n) @ g.transpose(1, 2)
        y = context.transpose(1, 2) @ theta             # (B, C', N): y[:, :, i] = Σ_j f_ij g_j
        y = y.reshape(b, self.inter_channels, h, w)
        return x + self.W(y)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, inter_channels={self.inter_channels}"
