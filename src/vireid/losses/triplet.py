"""Batch-hard triplet loss (Hermans et al. 2017), as used by AGW and the SCA stage."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["pairwise_euclidean", "batch_hard_triplet"]


def pairwise_euclidean(features: torch.Tensor) -> torch.Tensor:
    """Euclidean distances (B, B) between the rows of (B, D); the diagonal is exactly 0."""
    sq = (features * features).sum(1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * features @ features.T
    eye = torch.eye(features.shape[0], dtype=torch.bool, device=features.device)
    return d2.clamp_min(1e-12).sqrt().masked_fill(eye, 0.0)


def batch_hard_triplet(features: torch.Tensor, labels: torch.Tensor, margin: float = 0.2) -> torch.Tensor:
    """Mean over anchors of relu(d(a, hardest positive) − d(a, hardest negative) + margin).

    features (B, D) (pre-BN vectors in SCA), labels (B,). An anchor without another positive uses
    d_ap = 0; an anchor without a negative contributes 0.
    """
    dist = pairwise_euclidean(features)
    same = labels.reshape(-1, 1) == labels.reshape(1, -1)
    hardest_positive = dist.masked_fill(~same, 0.0).amax(1)
    hardest_negative = dist.masked_fill(same, float("inf")).amin(1)
    return F.relu(hardest_positive - hardest_negative + margin).mean()
