"""Confidence-weighted cross-entropy (L_wCE of the SCA stage)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["weighted_cross_entropy"]


def weighted_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(1/B) Σ_i w_i·CE_i for logits (B, K), targets (B,), weights (B,) (no gradient through weights)."""
    per_sample = F.cross_entropy(logits, targets, reduction="none")
    return (weights.detach().to(per_sample.dtype) * per_sample).mean()
