"""ClusterNCE over a memory of cluster features with the momentum update of cluster contrast (docs/method.md §6.1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ClusterMemory", "occurrence_rank"]


def occurrence_rank(labels: torch.Tensor) -> torch.Tensor:
    """For each element, how many earlier elements carry the same label: (N,) → (N,) int64.

    Lets per-label sequential work run as a few vectorised steps (one per rank) instead of a loop
    over elements.
    """
    labels = labels.reshape(-1)
    count = labels.numel()
    order = torch.argsort(labels, stable=True)
    ordered = labels[order]
    position = torch.arange(count, device=labels.device)
    starts = torch.ones(count, dtype=torch.bool, device=labels.device)
    starts[1:] = ordered[1:] != ordered[:-1]
    group_start = torch.cummax(torch.where(starts, position, 0), 0).values
    rank = torch.empty_like(position)
    rank[order] = position - group_start
    return rank


class ClusterMemory(nn.Module):
    """Memory of C cluster features (buffer `features`, (C, D)) and the ClusterNCE loss against it.

    The buffer moves with `.to(device)` and is saved in `state_dict`, so a checkpoint restores it.
    """

    def __init__(self, num_features: int, num_clusters: int, temperature: float = 0.05,
                 momentum: float = 0.1) -> None:
        super().__init__()
        self.num_features = num_features
        self.num_clusters = num_clusters
        self.temperature = temperature
        self.momentum = momentum
        self.register_buffer("features", torch.zeros(num_clusters, num_features))

    @classmethod
    def from_centroids(cls, centroids: torch.Tensor, temperature: float = 0.05,
                       momentum: float = 0.1) -> "ClusterMemory":
        """Memory initialised with (C, D) centroids (L2-normalised here), on the centroids' device."""
        memory = cls(centroids.shape[1], centroids.shape[0], temperature, momentum)
        memory.features = F.normalize(centroids.detach().clone(), dim=1)
        return memory

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """ClusterNCE: cross-entropy of (normalised inputs (B, D)) · memoryᵀ / τ against targets (B,)."""
        query = F.normalize(inputs, dim=1)
        logits = query @ self.features.to(query.dtype).T / self.temperature
        return F.cross_entropy(logits, targets)

    @torch.no_grad()
    def update(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        """Momentum update in batch order: M_y ← m·M_y + (1−m)·q, then M_y ← M_y/‖M_y‖, per sample.

        `inputs` (B, D) are normalised here, as in `forward`. Samples of one cluster are applied in
        batch order (one vectorised step per occurrence rank), which reproduces the sequential loop.
        """
        query = F.normalize(inputs.detach().to(self.features.dtype), dim=1)
        targets = targets.reshape(-1).long()
        rank = occurrence_rank(targets)
        for step in range(int(rank.max()) + 1 if rank.numel() else 0):
            chosen = rank == step
            ids = targets[chosen]
            mixed = self.momentum * self.features[ids] + (1.0 - self.momentum) * query[chosen]
            self.features[ids] = F.normalize(mixed, dim=1)

    def extra_repr(self) -> str:
        return (f"num_features={self.num_features}, num_clusters={self.num_clusters}, "
                f"temperature={self.temperature}, momentum={self.momentum}")
