"""MMLM: match visible clusters to infrared clusters through their multi-memories (docs/method.md §6.2).

Each cluster is summarised by n K-means centres; the cost of pairing visible cluster p with
infrared cluster q sums, over one side's memories, the distance to the nearest memory of the
other side. A Hungarian assignment (repeated in rounds while visible clusters are left over) or a
per-row argmin then maps every visible cluster to an infrared one, and the visible samples take
that infrared label: one shared label space, the infrared cluster ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score

from vireid.clustering.memories import kmeans_submemories
from vireid.clustering.quality import chance_agreement, majority_agreement, reachable_agreement
from vireid.errors import ConfigError, VireidError

__all__ = ["MatchResult", "multi_memory_match", "memory_match_cost", "assign_clusters"]

ASSIGNMENTS = ("hungarian", "nearest")
SUM_OVER = ("visible", "infrared")
# Distance values held at once by one block of the cost computation (16 MB in float32: small
# blocks are reused by the allocator instead of being faulted in afresh).
_BLOCK_ELEMENTS = 1 << 22


@dataclass
class MatchResult:
    """What MMLM found: memories, cost, pairs, rounds and the transferred visible labels.

    memories_v (Cv, n, D), memories_r (Cr, n, D) tensors; cost (Cv, Cr) float64, rows/columns =
    cluster ids; pairs (M, 2) int64 rows (visible id, infrared id) sorted by visible id; rounds (Cv,)
    1-based Hungarian round in which each visible cluster got its partner (0 = unmatched, which
    only an infrared side without clusters could cause); labels_* the input labels.
    """

    memories_v: torch.Tensor
    memories_r: torch.Tensor
    cost: np.ndarray
    pairs: np.ndarray
    rounds: np.ndarray
    labels_v: np.ndarray
    labels_r: np.ndarray
    labels_v_transferred: np.ndarray

    def evaluate(self, true_v: np.ndarray, true_r: np.ndarray) -> dict[str, float]:
        """Reliability of the matching against true identities (only for reporting, never training).

        ari_transferred: ARI of transferred visible labels vs truth over visible non-outliers;
        ari_all: ARI of all non-outlier labels (visible transferred + infrared) vs truth;
        pair_precision: fraction of pairs whose two clusters have the same majority identity;
        pair_precision_chance: the same for pairs drawn at random (each visible cluster with a
        uniformly drawn infrared cluster), the level a matching must beat;
        pair_precision_reachable: the most any pairing of these clusters can reach (share of visible
        clusters whose majority identity is some infrared cluster's majority);
        num_pairs: M.
        """
        true_v = np.asarray(true_v).reshape(-1)
        true_r = np.asarray(true_r).reshape(-1)
        if true_v.shape != self.labels_v.shape or true_r.shape != self.labels_r.shape:
            raise ValueError(f"true ids have shapes {true_v.shape}, {true_r.shape}; the labels have "
                             f"{self.labels_v.shape}, {self.labels_r.shape}")
        keep_v = self.labels_v >= 0
        keep_r = self.labels_r >= 0
        transferred = self.labels_v_transferred[keep_v]
        ari_transferred = float(adjusted_rand_score(true_v[keep_v], transferred)) if keep_v.any() else float("nan")
        all_true = np.concatenate([true_v[keep_v], true_r[keep_r]])
        all_pred = np.concatenate([transferred, self.labels_r[keep_r]])
        ari_all = float(adjusted_rand_score(all_true, all_pred)) if all_true.size else float("nan")
        precision = majority_agreement(self.labels_v, true_v, self.labels_r, true_r, self.pairs)
        chance = chance_agreement(self.labels_v, true_v, self.labels_r, true_r)
        reachable = reachable_agreement(self.labels_v, true_v, self.labels_r, true_r)
        return {"ari_transferred": ari_transferred, "ari_all": ari_all, "pair_precision": precision,
                "pair_precision_chance": chance,
                "pair_precision_reachable": reachable, "num_pairs": int(len(self.pairs))}


def memory_match_cost(memories_v: torch.Tensor, memories_r: torch.Tensor, sum_over: str = "visible",
                      block_size: int | None = None) -> np.ndarray:
    """Cost (Cv, Cr) float64 between clusters from their memories (Cv, n, D) and (Cr, n', D).

    sum_over="visible" (paper): M(p, q) = Σ_i min_j ‖K_V(p)_i − K_R(q)_j‖₂;
    "infrared" (reference): M(p, q) = Σ_j min_i ‖K_V(p)_i − K_R(q)_j‖₂.
    One distance matrix between all memories, computed in blocks of `block_size` visible
    clusters (default: about 4M distances per block).
    """
    if sum_over not in SUM_OVER:
        raise ConfigError(f"mmlm.cost_sum_over={sum_over!r}: expected one of {', '.join(SUM_OVER)}")
    cv, nv, dim = memories_v.shape
    cr, nr, _ = memories_r.shape
    if block_size is None:
        block_size = max(1, _BLOCK_ELEMENTS // max(1, nv * cr * nr))
    flat_r = memories_r.reshape(cr * nr, dim)
    sq_r = (flat_r * flat_r).sum(1)
    cost = torch.empty(cv, cr, dtype=torch.float64, device=memories_v.device)
    for start in range(0, cv, block_size):
        block = memories_v[start:start + block_size].reshape(-1, dim)  # (b·n, D)
        sq_v = (block * block).sum(1)
        dist = torch.addmm(sq_r[None, :], block, flat_r.T, alpha=-2.0).add_(sq_v[:, None])
        dist = dist.clamp_min_(0.0).sqrt_().view(-1, nv, cr, nr)  # [p, i, q, j]
        if sum_over == "visible":
            cost[start:start + block_size] = dist.amin(3).sum(1, dtype=torch.float64)
        else:
            cost[start:start + block_size] = dist.amin(1).sum(2, dtype=torch.float64)
    return cost.cpu().numpy()


def assign_clusters(cost: np.ndarray, assignment: str = "hungarian") -> tuple[np.ndarray, np.ndarray]:
    """Partner infrared cluster of every visible cluster: pairs (Cv, 2) int64 and rounds (Cv,).

    "hungarian": one-to-one minimum-cost assignment; while visible clusters are left over (Cv > Cr)
    they enter a new round against all infrared clusters. "nearest": row-wise argmin, round 1.
    """
    if assignment not in ASSIGNMENTS:
        raise ConfigError(f"mmlm.assignment={assignment!r}: expected one of {', '.join(ASSIGNMENTS)}")
    cv, cr = cost.shape
    partner = np.full(cv, -1, dtype=np.int64)
    rounds = np.zeros(cv, dtype=np.int64)
    if cr and assignment == "nearest":
        partner[:] = cost.argmin(1)
        rounds[:] = 1
    elif cr:
        remaining = np.arange(cv)
        current = 0
        while remaining.size:
            current += 1
            rows, cols = linear_sum_assignment(cost[remaining])
            partner[remaining[rows]] = cols
            rounds[remaining[rows]] = current
            remaining = np.delete(remaining, rows)
    matched = np.nonzero(partner >= 0)[0]
    return np.stack([matched, partner[matched]], 1).astype(np.int64), rounds


def multi_memory_match(feat_v: torch.Tensor, labels_v: np.ndarray | torch.Tensor, feat_r: torch.Tensor,
                       labels_r: np.ndarray | torch.Tensor, n_memories: int = 4, seed: int = 0,
                       assignment: str = "hungarian", cost_sum_over: str = "visible",
                       block_size: int | None = None, kmeans_iterations: int = 50,
                       kmeans_restarts: int = 1) -> MatchResult:
    """MMLM: K-means memories per cluster, nearest-memory cost, assignment, visible label transfer.

    feat_v (Nv, D), labels_v (Nv,), feat_r (Nr, D), labels_r (Nr,): clustering features and
    per-modality pseudo-labels (-1 = outlier, ids contiguous from 0). Every visible sample of
    cluster p takes the id of p's infrared partner; outliers stay -1.
    """
    if n_memories < 1:
        raise ConfigError(f"mmlm.n_memories={n_memories}: expected an integer >= 1")
    if assignment not in ASSIGNMENTS:
        raise ConfigError(f"mmlm.assignment={assignment!r}: expected one of {', '.join(ASSIGNMENTS)}")
    if cost_sum_over not in SUM_OVER:
        raise ConfigError(f"mmlm.cost_sum_over={cost_sum_over!r}: expected one of {', '.join(SUM_OVER)}")
    lab_v = _labels_numpy(labels_v, feat_v, "visible")
    lab_r = _labels_numpy(labels_r, feat_r, "infrared")
    cv, cr = int(lab_v.max(initial=-1)) + 1, int(lab_r.max(initial=-1)) + 1
    empty = [name for name, count in (("visible", cv), ("infrared", cr)) if count == 0]
    if empty:
        raise VireidError(f"MMLM cannot match: the {' and '.join(empty)} clustering found no clusters "
                          "(every sample is an outlier); lower cluster.eps or cluster.min_samples, "
                          "or train the CMC stage longer")
    memories_v = kmeans_submemories(feat_v, lab_v, n_memories, seed, kmeans_iterations, cv, kmeans_restarts)
    memories_r = kmeans_submemories(feat_r, lab_r, n_memories, seed, kmeans_iterations, cr, kmeans_restarts)
    cost = memory_match_cost(memories_v, memories_r, cost_sum_over, block_size)
    pairs, rounds = assign_clusters(cost, assignment)
    partner = np.full(cv, -1, dtype=np.int64)
    partner[pairs[:, 0]] = pairs[:, 1]
    transferred = np.where(lab_v >= 0, partner[np.maximum(lab_v, 0)], -1).astype(np.int64)
    return MatchResult(memories_v, memories_r, cost, pairs, rounds, lab_v, lab_r, transferred)


def _labels_numpy(labels: np.ndarray | torch.Tensor, features: torch.Tensor, modality: str) -> np.ndarray:
    lab = (labels.detach().cpu().numpy() if torch.is_tensor(labels) else np.asarray(labels))
    lab = lab.astype(np.int64).reshape(-1)
    if lab.size != features.shape[0]:
        raise ValueError(f"{modality}: {lab.size} labels for {features.shape[0]} feature rows")
    return lab
