"""MMLM stage: per-modality clusters of the CMC model, multi-memory matching, label transfer
(docs/method.md §6.2); and the shared labels SCA trains on when MMLM is switched off."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from torch import nn

from vireid.clustering.matching import MatchResult, multi_memory_match
from vireid.clustering.oracle import identity_clusters, pairs_at_precision, transfer
from vireid.clustering.quality import label_ari, majority_agreement, shared_label_ari
from vireid.config import ClusterConfig, MMLMConfig
from vireid.engine.context import RunContext
from vireid.engine.distributed import broadcast_arrays, is_main
from vireid.engine.features import ClusteringRound, cluster_train_set
from vireid.engine.trainset import TrainSet
from vireid.errors import NoClustersError


@dataclass
class SharedLabels:
    """One label space for both modalities (the infrared cluster ids); -1 = outlier."""

    labels_v: np.ndarray
    labels_r: np.ndarray
    num_classes: int
    summary: dict = field(default_factory=dict)


def match_round(clustering: ClusteringRound, mmlm: MMLMConfig, device, truth: tuple | None = None
                ) -> tuple[MatchResult, dict]:
    """Run multi_memory_match on a clustering round; returns (MatchResult, summary dict). With
    `truth` = (visible pids, infrared pids) the summary adds the matching's reliability measures."""
    result = multi_memory_match(clustering.features_v.to(device), clustering.labels_v, clustering.features_r.to(device), clustering.labels_r,
                                n_memories=mmlm.n_memories, seed=mmlm.seed, kmeans_iterations=mmlm.kmeans_iterations,
                                kmeans_restarts=mmlm.kmeans_restarts, assignment=mmlm.assignment,
                                cost_sum_over=mmlm.cost_sum_over)
    summary = {"pairs": int(len(result.pairs)), "clusters_visible": clustering.num_v, "clusters_infrared": clustering.num_r,
               "rounds": int(np.max(result.rounds)) if len(result.rounds) else 0}
    if truth is not None and truth[0] is not None:
        summary.update({k: float(v) for k, v in result.evaluate(*truth).items()})
    return result, summary


def mmlm_stage(model: nn.Module, train: TrainSet, mmlm: MMLMConfig, cluster: ClusterConfig, ctx: RunContext
               ) -> SharedLabels:
    """Cluster with the CMC model, match visible to infrared clusters, transfer the labels.

    Rank 0 matches and broadcasts the shared labels; its matching and summary go to `mmlm/`.
    """
    clustering = cluster_train_set(model, train, cluster, ctx, mixed=False)
    if clustering.num_v == 0 or clustering.num_r == 0:
        raise NoClustersError(f"MMLM: clustering found {clustering.num_v} visible and {clustering.num_r} infrared clusters, "
                              "so there is nothing to match")
    if not is_main():
        labels_v, labels_r, k = broadcast_arrays(None, 3)
        return SharedLabels(labels_v, labels_r, int(k[0]))
    result, summary = match_round(clustering, mmlm, ctx.device, (train.visible.pids, train.infrared.pids))
    shared = SharedLabels(result.labels_v_transferred.astype(np.int64), clustering.labels_r.astype(np.int64),
                          clustering.num_r, summary)
    broadcast_arrays([shared.labels_v, shared.labels_r, np.array([shared.num_classes])], 3)
    run = ctx.run
    run.save_npz("mmlm/matching.npz", pairs=result.pairs, cost=result.cost, rounds=result.rounds,
                 labels_visible=clustering.labels_v, labels_infrared=clustering.labels_r,
                 labels_visible_transferred=result.labels_v_transferred,
                 features_visible=clustering.features_v.half().numpy(), features_infrared=clustering.features_r.half().numpy(),
                 pids_visible=train.visible.pids, pids_infrared=train.infrared.pids)
    run.write_json("mmlm/summary.json", summary)
    run.log_metrics("mmlm", stage="mmlm", **summary)
    run.log("mmlm: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.items()))
    return shared


def mixed_shared_labels(model: nn.Module, train: TrainSet, cluster: ClusterConfig, ctx: RunContext) -> SharedLabels:
    """Without MMLM (ablation `mmlm.enabled: false`): the mixed clustering's labels are the shared space."""
    clustering = cluster_train_set(model, train, cluster, ctx, mixed=True)
    labels_v, labels_r = clustering.labels_m_v.astype(np.int64), clustering.labels_m_r.astype(np.int64)
    summary = {"clusters_mixed": clustering.num_m,
               "ari_all": shared_label_ari(labels_v, labels_r, train.visible.pids, train.infrared.pids)}
    ctx.run.log_metrics("mmlm", stage="mmlm", enabled=0, **summary)
    return SharedLabels(labels_v, labels_r, clustering.num_m, summary)


def oracle_shared_labels(model: nn.Module, train: TrainSet, mmlm: MMLMConfig, cluster: ClusterConfig,
                         ctx: RunContext) -> SharedLabels:
    """Diagnosis only (`mmlm.oracle_precision` in [0, 1]): shared labels from the TRUE identities.

    The per-modality clusters are the CMC model's (`mmlm.oracle_clusters: cmc`) or the identities
    themselves (`identity`); every visible cluster is paired with an infrared cluster so that exactly
    the requested share of pairs is right (clustering/oracle.py). It answers "what would SCA reach if
    MMLM's pairs were this good", and needs the training identities, which training never uses.
    """
    truth_v, truth_r = train.visible.pids, train.infrared.pids
    if mmlm.oracle_clusters == "identity":
        labels_v, labels_r = identity_clusters(truth_v, truth_r)
    else:
        clustering = cluster_train_set(model, train, cluster, ctx, mixed=False)
        labels_v, labels_r = clustering.labels_v.astype(np.int64), clustering.labels_r.astype(np.int64)
        if clustering.num_v == 0 or clustering.num_r == 0:
            raise NoClustersError(f"oracle labels: clustering found {clustering.num_v} visible and "
                                  f"{clustering.num_r} infrared clusters")
    rng = np.random.default_rng(ctx.seed_for("mmlm", 0, "oracle"))
    pairs = pairs_at_precision(labels_v, truth_v, labels_r, truth_r, mmlm.oracle_precision, rng)
    transferred = transfer(labels_v, pairs)
    num_r = int(labels_r.max()) + 1
    summary = {"oracle_precision": float(mmlm.oracle_precision), "oracle_clusters": mmlm.oracle_clusters,
               "pairs": int(len(pairs)), "clusters_visible": int(labels_v.max()) + 1, "clusters_infrared": num_r,
               "pair_precision": majority_agreement(labels_v, truth_v, labels_r, truth_r, pairs),
               "ari_transferred": label_ari(transferred, truth_v),
               "ari_all": shared_label_ari(transferred, labels_r, truth_v, truth_r)}
    run = ctx.run
    run.write_json("mmlm/summary.json", summary)
    run.log_metrics("mmlm", stage="mmlm", **summary)
    run.log("DIAGNOSTIC: the shared labels come from the true identities (mmlm.oracle_precision="
            f"{mmlm.oracle_precision}, mmlm.oracle_clusters={mmlm.oracle_clusters}); this run measures what SCA "
            "reaches with such labels, not unsupervised learning. " + ", ".join(
                f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.items()))
    return SharedLabels(transferred, labels_r, num_r, summary)
