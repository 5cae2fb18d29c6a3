"""Intra-modality prototype alignment (L_intra of the SCA stage, docs/method.md §6.3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vireid.errors import ConfigError

__all__ = ["class_prototypes", "intra_alignment_loss", "INTRA_DISTANCES"]

INTRA_DISTANCES = ("l2sq_unit", "l2sq", "mse", "l1")


def class_prototypes(features: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor,
                     num_classes: int) -> torch.Tensor:
    """Confidence-weighted class means: P_c = (1/n_c) Σ_{i: y_i = c} w_i·f_i, (N, D) → (K, D).

    n_c counts the class's samples (unweighted), as in the paper; a class without samples gets zeros.
    """
    labels = labels.reshape(-1).long()
    sums = features.new_zeros(num_classes, features.shape[1])
    sums.index_add_(0, labels, features * weights.reshape(-1, 1).to(features.dtype))
    counts = torch.bincount(labels, minlength=num_classes).to(features.dtype)
    return sums / counts.clamp_min(1.0)[:, None]


def intra_alignment_loss(features: torch.Tensor, prototypes: torch.Tensor, weights: torch.Tensor,
                         distance: str = "l2sq_unit") -> torch.Tensor:
    """(1/B) Σ_i w_i·dist(f_i, sg(p_i)) for features (B, D), per-sample prototypes (B, D), weights (B,).

    distance "l2sq_unit" (the paper profile's reading of ‖f − sg(P)‖²): squared Euclidean between
    the L2-normalised feature and prototype, in [0, 4] whatever the features' scale; "l2sq": squared
    Euclidean summed over D (the literal formula; on unnormalised 2048-d GeM vectors it reaches 1e5-1e8
    and can diverge); "mse": the same averaged over D; "l1" (reference): mean absolute error over D.
    Prototypes are targets only: no gradient reaches them.
    """
    if distance == "l2sq_unit":
        features, prototypes = F.normalize(features, dim=1), F.normalize(prototypes, dim=1)
    diff = features - prototypes.detach()
    if distance in ("l2sq", "l2sq_unit"):
        per_sample = (diff * diff).sum(1)
    elif distance == "mse":
        per_sample = (diff * diff).mean(1)
    elif distance == "l1":
        per_sample = diff.abs().mean(1)
    else:
        raise ConfigError(f"sca.intra_distance={distance!r}: expected one of {', '.join(INTRA_DISTANCES)}")
    return (weights.detach().to(per_sample.dtype) * per_sample).mean()
