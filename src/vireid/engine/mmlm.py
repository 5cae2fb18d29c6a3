"""MMLM stage: per-modality clusters of the CMC model, multi-memory matching, label transfer (METHOD §6.2)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vireid.config import Config
from vireid.engine.features import ClusteringRound, cluster_train_set, transferred_label_ari
from vireid.engine.trainset import TrainSet
from vireid.errors import VireidError


@dataclass
class SharedLabels:
    """One label space for both modalities (the infrared cluster ids); -1 = outlier."""

    labels_v: np.ndarray
    labels_r: np.ndarray
    num_classes: int
    summary: dict


def match_round(rnd: ClusteringRound, cfg: Config, device, pids_v=None, pids_r=None):
    """Run multi_memory_match on a clustering round; returns (MatchResult, summary dict)."""
    from vireid.clustering import multi_memory_match

    m = cfg.mmlm
    result = multi_memory_match(rnd.features_v.to(device), rnd.labels_v, rnd.features_r.to(device), rnd.labels_r,
                                n_memories=m.n_memories, seed=m.seed, assignment=m.assignment,
                                cost_sum_over=m.cost_sum_over)
    summary = {"pairs": int(len(result.pairs)), "clusters_visible": rnd.num_v, "clusters_infrared": rnd.num_r,
               "rounds": int(np.max(result.rounds)) if len(result.rounds) else 0}
    if pids_v is not None:
        summary.update({k: float(v) for k, v in result.evaluate(pids_v, pids_r).items()})
    return result, summary


def mmlm_stage(model, train: TrainSet, cfg: Config, run, device) -> SharedLabels:
    """Cluster with the CMC model, match visible to infrared clusters, transfer the labels."""
    from vireid.engine.distributed import broadcast_arrays, is_main

    rnd = cluster_train_set(model, train, cfg, device, mixed=False)
    if rnd.num_v == 0 or rnd.num_r == 0:
        from vireid.errors import NoClustersError

        raise NoClustersError(f"MMLM: clustering found {rnd.num_v} visible and {rnd.num_r} infrared clusters, so "
                              f"there is nothing to match; try a larger cluster.eps (now {cfg.cluster.eps}) "
                              "or better start weights (model.pretrained)")
    if not is_main():  # rank 0 matches; the others receive the shared labels
        lv, lr, k = broadcast_arrays(None, 3)
        return SharedLabels(lv, lr, int(k[0]), {})
    truth = (train.visible.pids, train.infrared.pids) if train.has_ground_truth else (None, None)
    result, summary = match_round(rnd, cfg, device, *truth)
    shared = SharedLabels(result.labels_v_transferred.astype(np.int64), rnd.labels_r.astype(np.int64),
                          rnd.num_r, summary)
    broadcast_arrays([shared.labels_v, shared.labels_r, np.array([shared.num_classes])], 3)
    run.save_npz("mmlm/matching.npz", pairs=result.pairs, cost=result.cost, rounds=result.rounds,
                 labels_visible=rnd.labels_v, labels_infrared=rnd.labels_r,
                 labels_visible_transferred=result.labels_v_transferred,
                 features_visible=rnd.features_v.half().numpy(), features_infrared=rnd.features_r.half().numpy(),
                 pids_visible=train.visible.pids, pids_infrared=train.infrared.pids)
    run.write_json("mmlm/summary.json", summary)
    run.log_metrics("mmlm", stage="mmlm", **summary)
    run.log("mmlm: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.items()))
    return shared


def mixed_shared_labels(model, train: TrainSet, cfg: Config, run, device) -> SharedLabels:
    """Without MMLM (ablation `mmlm.enabled: false`): the mixed clustering's labels are the shared space."""
    rnd = cluster_train_set(model, train, cfg, device, mixed=True)
    lv, lr = rnd.labels_m_v.astype(np.int64), rnd.labels_m_r.astype(np.int64)
    summary = {"clusters_mixed": rnd.num_m}
    if train.has_ground_truth:
        summary["ari_all"] = transferred_label_ari(lv, lr, train.visible.pids, train.infrared.pids)
    run.log_metrics("mmlm", stage="mmlm", enabled=0, **summary)
    return SharedLabels(lv, lr, rnd.num_m, summary)


def match_command(run_dir: str | None = None, features: str | None = None, n_memories: int | None = None,
                  assignment: str | None = None, device: str = "auto") -> str:
    """`vireid match`: recompute the matching from saved clustering features and labels, and report it."""
    from vireid.config import Config, load_config
    from vireid.engine.device import select_device

    cfg = Config()
    if run_dir is not None:
        path = Path(run_dir) / "mmlm" / "matching.npz"
        if not path.exists():
            raise VireidError(f"{run_dir} has no mmlm/matching.npz (run the mmlm stage first)")
        if (Path(run_dir) / "config.yaml").exists():
            cfg = load_config(file=Path(run_dir) / "config.yaml")
    else:
        path = Path(features)
        if not path.exists():
            raise VireidError(f"feature file {path} does not exist")
    with np.load(path) as z:
        arrays = dict(z)
    need = ("features_visible", "labels_visible", "features_infrared", "labels_infrared")
    missing = [k for k in need if k not in arrays]
    if missing:
        raise VireidError(f"{path} lacks {', '.join(missing)} (expected arrays {', '.join(need)})")
    if n_memories is not None:
        cfg.mmlm.n_memories = n_memories
    if assignment is not None:
        cfg.mmlm.assignment = assignment
    rnd = ClusteringRound(torch.from_numpy(arrays["features_visible"]).float(),
                          torch.from_numpy(arrays["features_infrared"]).float(),
                          arrays["labels_visible"].astype(np.int64), arrays["labels_infrared"].astype(np.int64))
    truth = (arrays.get("pids_visible"), arrays.get("pids_infrared"))
    result, summary = match_round(rnd, cfg, select_device(device), *truth)
    lines = [f"MMLM matching of {path} (n_memories={cfg.mmlm.n_memories}, assignment={cfg.mmlm.assignment}, "
             f"cost summed over {cfg.mmlm.cost_sum_over} memories)"]
    lines += [f"  {k}: {v:.4f}" if isinstance(v, float) else f"  {k}: {v}" for k, v in summary.items()]
    lines.append("  first pairs (visible -> infrared, cost, round): " + ", ".join(
        f"{p}->{q} ({result.cost[p, q]:.3f}, r{result.rounds[p]})" for p, q in result.pairs[:8]))
    return "\n".join(lines) + "\n" + json.dumps(summary)
