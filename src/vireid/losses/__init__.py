"""Losses of the CMC and SCA stages: ClusterNCE memory, batch-hard triplet, MMD, alignment, weighted CE."""

from vireid.losses.alignment import class_prototypes, intra_alignment_loss
from vireid.losses.cluster_memory import ClusterMemory, occurrence_rank
from vireid.losses.confidence import gmm_confidence, minmax_normalize
from vireid.losses.mmd import inter_modality_loss, mmd2, per_identity_mmd2
from vireid.losses.triplet import batch_hard_triplet, pairwise_euclidean
from vireid.losses.weighted_ce import weighted_cross_entropy

__all__ = [
    "ClusterMemory",
    "occurrence_rank",
    "batch_hard_triplet",
    "pairwise_euclidean",
    "mmd2",
    "per_identity_mmd2",
    "inter_modality_loss",
    "class_prototypes",
    "intra_alignment_loss",
    "weighted_cross_entropy",
    "gmm_confidence",
    "minmax_normalize",
]
