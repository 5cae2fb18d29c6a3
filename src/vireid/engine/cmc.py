"""CMC stage: cross-modality clustering and cluster-contrast training in two phases (METHOD §6.1).

Every epoch re-clusters the clustering features of each modality (phase 2 also the mixed set),
rebuilds the cluster memories from the centroids and trains with ClusterNCE. Phase 1 trains on the
visible and infrared memories; phase 2 adds a second optimiser step per iteration against the memory
of mixed clusters that hold both modalities.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from vireid.config import Config
from vireid.engine.features import ClusteringRound, cluster_train_set
from vireid.engine.trainset import TrainSet, train_transforms, training_loader


@dataclass
class CMCResult:
    """What the stage hands on: the trained model's last clustering round."""

    last_round: ClusteringRound | None


def _adam(model: torch.nn.Module, cfg: Config) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.cmc.lr, weight_decay=cfg.cmc.weight_decay, fused=True)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.cmc.step_size, gamma=cfg.cmc.gamma)
    return opt, sched


def _memory(features: torch.Tensor, labels: np.ndarray, num_clusters: int, cfg: Config, device: torch.device):
    from vireid.clustering.memories import cluster_centroids
    from vireid.losses import ClusterMemory

    centroids = cluster_centroids(features, labels, num_clusters)
    return ClusterMemory.from_centroids(centroids, temperature=cfg.cmc.temperature,
                                        momentum=cfg.cmc.memory_momentum).to(device)


def mixed_memory_centroids(feat_v: torch.Tensor, feat_r: torch.Tensor, labels_m_v: np.ndarray,
                           labels_m_r: np.ndarray, num_clusters: int) -> torch.Tensor:
    """(C, D) mixed-memory entries: ½(visible centroid + infrared centroid), or the one present,
    L2-normalised (the memory compares normalised features by cosine)."""
    from vireid.clustering.memories import cluster_centroids

    cv = cluster_centroids(feat_v, labels_m_v, num_clusters)
    cr = cluster_centroids(feat_r, labels_m_r, num_clusters)
    has_v = torch.from_numpy(np.bincount(labels_m_v[labels_m_v >= 0], minlength=num_clusters) > 0)
    has_r = torch.from_numpy(np.bincount(labels_m_r[labels_m_r >= 0], minlength=num_clusters) > 0)
    weight_v = has_v.float() / (has_v.float() + has_r.float()).clamp(min=1)
    weight_r = has_r.float() / (has_v.float() + has_r.float()).clamp(min=1)
    mixed = weight_v[:, None] * cv + weight_r[:, None] * cr
    return F.normalize(mixed, dim=1)


def _cross_modal_only(labels_m_v: np.ndarray, labels_m_r: np.ndarray, num_clusters: int) -> tuple[np.ndarray, np.ndarray]:
    """Mixed labels with every cluster that lacks one modality set to -1 (outlier for step B)."""
    has_v = np.bincount(labels_m_v[labels_m_v >= 0], minlength=num_clusters) > 0
    has_r = np.bincount(labels_m_r[labels_m_r >= 0], minlength=num_clusters) > 0
    both = has_v & has_r
    keep_v = np.where((labels_m_v >= 0) & both[np.maximum(labels_m_v, 0)], labels_m_v, -1)
    keep_r = np.where((labels_m_r >= 0) & both[np.maximum(labels_m_r, 0)], labels_m_r, -1)
    return keep_v, keep_r


class _Batches:
    """Endless iterator over a ClusterSampler's batches, advancing its epoch when exhausted."""

    def __init__(self, sampler) -> None:
        self.sampler, self.epoch, self.it = sampler, 0, iter(sampler)

    def __next__(self) -> list[int]:
        try:
            return next(self.it)
        except StopIteration:
            self.epoch += 1
            self.sampler.set_epoch(self.epoch)
            self.it = iter(self.sampler)
            return next(self.it)


def _sampler(labels: np.ndarray, camids: np.ndarray, cfg: Config, seed: int):
    from vireid.data.samplers import ClusterSampler

    from vireid.engine.distributed import world

    rank, size = world()
    return _Batches(ClusterSampler(labels, camids, batch_size=cfg.cmc.batch_size,
                                   num_instances=cfg.cmc.num_instances, iterations=cfg.cmc.iterations,
                                   seed=seed, rank=rank, world_size=size))


def _contrast_step(model, views, idx_v, idx_r, labels_v, labels_r, mem_v, mem_r, optimizer, device, amp) -> float:
    """One optimiser step of ClusterNCE on both visible views and the infrared batch (`views`, built
    by `TrainingViews`), then the per-sample memory updates in batch order."""
    from vireid.engine.distributed import gather_batch

    x = torch.cat(views).to(device, non_blocking=True)
    y_v = torch.from_numpy(labels_v[idx_v]).to(device).repeat(2)
    y_r = torch.from_numpy(labels_r[idx_r]).to(device)
    n_vis = 2 * len(idx_v)
    with amp():
        out = model(x, modality="both", n_visible=n_vis)
    feats = out.bn.float()
    loss = mem_v(feats[:n_vis], y_v) + mem_r(feats[n_vis:], y_r)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        normed = F.normalize(feats.detach(), dim=1)
        mem_v.update(gather_batch(normed[:n_vis]), gather_batch(y_v))
        mem_r.update(gather_batch(normed[n_vis:]), gather_batch(y_r))
    return float(loss.detach())


def cmc_epoch(model, train: TrainSet, cfg: Config, run, device, phase: int, epoch: int,
              optimizer, transforms, amp, global_epoch: int, seed: int) -> dict:
    """Cluster, rebuild memories, and train one epoch; returns the epoch's log record."""
    t0 = time.time()
    rnd = cluster_train_set(model, train, cfg, device, mixed=(phase == 2))
    t_cluster = time.time() - t0
    if rnd.num_v == 0 or rnd.num_r == 0:
        from vireid.errors import NoClustersError

        raise NoClustersError(f"CMC phase {phase} epoch {epoch}: clustering found {rnd.num_v} visible and "
                              f"{rnd.num_r} infrared clusters; try a larger cluster.eps (now {cfg.cluster.eps}) "
                              "or better initial weights (model.pretrained)")
    mem_v = _memory(rnd.features_v, rnd.labels_v, rnd.num_v, cfg, device)
    mem_r = _memory(rnd.features_r, rnd.labels_r, rnd.num_r, cfg, device)
    batches_v = _sampler(rnd.labels_v, train.visible.camids, cfg, seed * 1000 + global_epoch * 2)
    batches_r = _sampler(rnd.labels_r, train.infrared.camids, cfg, seed * 1000 + global_epoch * 2 + 1)
    mixed = mixed_batches = None  # (memory, visible labels, infrared labels), their samplers
    if phase == 2:
        from vireid.losses import ClusterMemory

        mv, mr = _cross_modal_only(rnd.labels_m_v, rnd.labels_m_r, rnd.num_m)
        if (mv >= 0).any() and (mr >= 0).any():
            centroids = mixed_memory_centroids(rnd.features_v, rnd.features_r, rnd.labels_m_v, rnd.labels_m_r, rnd.num_m)
            mem_m = ClusterMemory.from_centroids(centroids, temperature=cfg.cmc.temperature,
                                                 momentum=cfg.cmc.memory_momentum).to(device)
            mixed = (mem_m, mv, mr)
            mixed_batches = (_sampler(mv, train.visible.camids, cfg, seed * 1000 + global_epoch * 2 + 500),
                             _sampler(mr, train.infrared.camids, cfg, seed * 1000 + global_epoch * 2 + 501))
    # Every iteration's indices are drawn up front (cheap), so the images can be augmented ahead of
    # time in `data.workers` processes; batch i is built under its own seed, the same for any count.
    steps = []
    for _ in range(cfg.cmc.iterations):
        main = (next(batches_v), next(batches_r))
        steps.append([main, tuple(next(b) for b in mixed_batches) if mixed_batches is not None else None])
    loader = training_loader(steps, train, transforms, cfg, device, seed=seed * 1000 + global_epoch)
    model.train()
    losses, losses_m = [], []
    t1 = time.time()
    bar = tqdm(zip(steps, loader), total=len(steps), desc=f"cmc phase {phase} epoch {epoch}", leave=False,
               disable=None)
    for (main, mixed_step), (views, views_m) in bar:
        losses.append(_contrast_step(model, views, *main, rnd.labels_v, rnd.labels_r, mem_v, mem_r,
                                     optimizer, device, amp))
        if mixed is not None:
            mem_m, mv, mr = mixed
            losses_m.append(_contrast_step(model, views_m, *mixed_step, mv, mr, mem_m, mem_m, optimizer, device, amp))
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    record = {"loss": float(np.mean(losses)), "seconds_cluster": t_cluster,
              "seconds_train": time.time() - t1, **rnd.summary()}
    if losses_m:
        record["loss_mixed"] = float(np.mean(losses_m))
    run.save_npz(f"pseudo_labels/cmc_phase{phase}_epoch{epoch:03d}.npz", **rnd.arrays())
    memories = {"visible": mem_v.features.detach().cpu(), "infrared": mem_r.features.detach().cpu()}
    if mixed is not None:
        memories["mixed"] = mixed[0].features.detach().cpu()
    record["_memories"] = memories
    return record


def cmc_stage(model, train: TrainSet, cfg: Config, run, device, resume: dict | None = None,
              on_epoch_end=None, evaluate=None) -> CMCResult:
    """Train both CMC phases; `resume` is a checkpoint of this stage (continue after its epoch).

    `on_epoch_end(stage, epoch_index, optimizer, scheduler, memories)` saves the checkpoint; it is
    the pipeline's, so the stage does not know the run folder's file names; so is `evaluate(stage,
    epoch_index)`, called after every epoch (counted over both phases), which decides when to evaluate.
    """
    from vireid.engine.device import autocast

    transforms = train_transforms(cfg)
    amp = lambda: autocast(device, cfg.model.amp)  # noqa: E731
    phases = [(1, cfg.cmc.phase1_epochs), (2, cfg.cmc.phase2_epochs)]
    done = resume["epoch"] + 1 if resume is not None else 0  # epochs completed over both phases
    offset = 0
    for phase, epochs in phases:
        if epochs <= 0:
            continue
        if done >= offset + epochs:
            offset += epochs
            continue
        optimizer, scheduler = _adam(model, cfg)
        start = 0
        if resume is not None and done > offset:
            optimizer.load_state_dict(resume["optimizer"])
            scheduler.load_state_dict(resume["scheduler"])
            start = done - offset
        for epoch in range(start, epochs):
            record = cmc_epoch(model, train, cfg, run, device, phase, epoch, optimizer, transforms, amp,
                               global_epoch=offset + epoch, seed=cfg.seed)
            scheduler.step()
            memories = record.pop("_memories")
            record["lr"] = optimizer.param_groups[0]["lr"]
            run.log_metrics("epoch", stage="cmc", epoch=offset + epoch, phase=phase, **record)
            if "clusters_visible" in record:  # only rank 0 clusters, so only it has the counts
                run.log(f"cmc phase {phase} epoch {epoch + 1}/{epochs}: loss {record['loss']:.3f}, "
                        f"clusters V/R{'/M' if phase == 2 else ''} {record['clusters_visible']}/"
                        f"{record['clusters_infrared']}"
                        + (f"/{record['clusters_mixed']}" if phase == 2 else "")
                        + (f", ARI V/R {record['ari_visible']:.3f}/{record['ari_infrared']:.3f}"
                           if "ari_visible" in record else ""))
            if evaluate is not None:
                evaluate("cmc", offset + epoch)
            if on_epoch_end is not None:
                on_epoch_end("cmc", offset + epoch, optimizer, scheduler, memories)
        offset += epochs
    return CMCResult(last_round=None)
