"""CMC stage: cross-modality clustering and cluster-contrast training in two phases (docs/method.md §6.1).

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
from torch import nn

from vireid.clustering.memories import cluster_centroids, cluster_means
from vireid.clustering.quality import modality_presence
from vireid.config import ClusterConfig, CMCConfig
from vireid.data.samplers import ClusterSampler, EndlessBatches
from vireid.engine.context import RunContext
from vireid.engine.distributed import gather_batch, share_weight
from vireid.engine.features import ClusteringRound, cluster_train_set
from vireid.engine.hooks import EpochEnd
from vireid.engine.trainset import TrainSet, training_loader
from vireid.errors import NoClustersError
from vireid.losses import ClusterMemory
from vireid.models.factory import unwrap_model
from vireid.progress import progress


@dataclass
class CMCResult:
    """What the stage hands on: the last epoch's memories (C, D) per modality (and mixed), its
    clustering round, and how many epochs this call trained."""

    memories: dict[str, torch.Tensor]
    last_round: ClusteringRound | None
    epochs: int


@dataclass
class ContrastTarget:
    """Pseudo-labels of both modalities and the memories their features are contrasted against."""

    labels_v: np.ndarray
    labels_r: np.ndarray
    memory_v: ClusterMemory
    memory_r: ClusterMemory


def cmc_optimizer(model: nn.Module, cmc: CMCConfig) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """Adam with step decay; a new one per phase."""
    params = [p for p in unwrap_model(model).parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cmc.lr, weight_decay=cmc.weight_decay, fused=True)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cmc.step_size, gamma=cmc.gamma)
    return opt, sched


def mixed_memory_centroids(feat_v: torch.Tensor, feat_r: torch.Tensor, labels_m_v: np.ndarray,
                           labels_m_r: np.ndarray, num_clusters: int, form: str = "paper") -> torch.Tensor:
    """(C, D) mixed-memory entries: ½(visible centroid + infrared centroid), or the one present,
    L2-normalised (the memory compares normalised features by cosine).

    form "paper": the per-modality centroids are the normalised memories' entries; "reference" (the
    released code): the raw per-modality means, normalised only after averaging, so the modality
    whose clustering features are longer weighs more.
    """
    centre = cluster_centroids if form == "paper" else cluster_means
    cv = centre(feat_v, labels_m_v, num_clusters)
    cr = centre(feat_r, labels_m_r, num_clusters)
    has_v, has_r = (torch.from_numpy(h).float() for h in modality_presence(labels_m_v, labels_m_r, num_clusters))
    present = (has_v + has_r).clamp(min=1)
    mixed = (has_v / present)[:, None] * cv + (has_r / present)[:, None] * cr
    return F.normalize(mixed, dim=1)


def cross_modal_only(labels_m_v: np.ndarray, labels_m_r: np.ndarray, num_clusters: int) -> tuple[np.ndarray, np.ndarray]:
    """Mixed labels with every cluster that lacks one modality set to -1 (outlier for step B)."""
    has_v, has_r = modality_presence(labels_m_v, labels_m_r, num_clusters)
    both = has_v & has_r
    keep_v = np.where((labels_m_v >= 0) & both[np.maximum(labels_m_v, 0)], labels_m_v, -1)
    keep_r = np.where((labels_m_r >= 0) & both[np.maximum(labels_m_r, 0)], labels_m_r, -1)
    return keep_v, keep_r


class CMCTrainer:
    """One CMC epoch at a time: cluster, rebuild the memories, train `cmc.iterations` steps."""

    def __init__(self, model: nn.Module, train: TrainSet, cmc: CMCConfig, cluster: ClusterConfig,
                 ctx: RunContext) -> None:
        self.model, self.train, self.cmc, self.cluster, self.ctx = model, train, cmc, cluster, ctx
        self.scaler = ctx.grad_scaler()

    def memory(self, centroids: torch.Tensor) -> ClusterMemory:
        return ClusterMemory.from_centroids(centroids, temperature=self.cmc.temperature,
                                            momentum=self.cmc.memory_momentum).to(self.ctx.device)

    def batches(self, labels: np.ndarray, camids: np.ndarray, seed: int) -> EndlessBatches:
        c = self.cmc
        return EndlessBatches(ClusterSampler(labels, camids, batch_size=c.batch_size, num_instances=c.num_instances,
                                             iterations=c.iterations, seed=seed, rank=self.ctx.rank,
                                             world_size=self.ctx.world_size))

    def contrast_step(self, views: list[torch.Tensor], step: tuple, target: ContrastTarget,
                      optimizer: torch.optim.Optimizer) -> float:
        """One optimiser step of ClusterNCE on both visible views and the infrared batch, then the
        per-sample memory updates in batch order (gathered over ranks, so memories stay identical)."""
        idx_v, idx_r = step
        device = self.ctx.device
        x = torch.cat(views).to(device, non_blocking=True)
        y_v = torch.from_numpy(target.labels_v[idx_v]).to(device).repeat(2)
        y_r = torch.from_numpy(target.labels_r[idx_r]).to(device)
        n_vis = 2 * len(idx_v)
        with self.ctx.autocast():
            out = self.model(x, modality="both", n_visible=n_vis)
        feats = out.bn.float()
        loss = target.memory_v(feats[:n_vis], y_v) + target.memory_r(feats[n_vis:], y_r)
        optimizer.zero_grad(set_to_none=True)
        # under DDP, weighted by this rank's share of the global batch: the averaged gradient is the batch mean's
        self.scaler.scale(loss * share_weight(len(idx_v), self.cmc.batch_size)).backward()
        self.scaler.step(optimizer)
        self.scaler.update()
        with torch.no_grad():
            normed = F.normalize(feats.detach(), dim=1)
            target.memory_v.update(gather_batch(normed[:n_vis]), gather_batch(y_v))
            target.memory_r.update(gather_batch(normed[n_vis:]), gather_batch(y_r))
        return float(loss.detach())

    def mixed_target(self, clustering: ClusteringRound) -> ContrastTarget | None:
        """Phase 2's step-B target: mixed clusters holding both modalities, against the mixed memory."""
        mv, mr = cross_modal_only(clustering.labels_m_v, clustering.labels_m_r, clustering.num_m)
        if not ((mv >= 0).any() and (mr >= 0).any()):
            return None
        mem = self.memory(mixed_memory_centroids(clustering.features_v, clustering.features_r, clustering.labels_m_v,
                                                 clustering.labels_m_r, clustering.num_m, self.cmc.mixed_memory))
        return ContrastTarget(mv, mr, mem, mem)

    def epoch(self, phase: int, epoch: int, global_epoch: int, optimizer: torch.optim.Optimizer
              ) -> tuple[dict, dict[str, torch.Tensor], ClusteringRound]:
        """Cluster, rebuild memories and train one epoch; returns (log record, memories, round)."""
        t0 = time.time()
        clustering = cluster_train_set(self.model, self.train, self.cluster, self.ctx, mixed=(phase == 2))
        t_cluster = time.time() - t0
        if clustering.num_v == 0 or clustering.num_r == 0:
            raise NoClustersError(f"CMC phase {phase} epoch {epoch + 1}: clustering found {clustering.num_v} visible and "
                                  f"{clustering.num_r} infrared clusters")
        seed = lambda stream: self.ctx.seed_for("cmc", global_epoch, stream)  # noqa: E731
        main = ContrastTarget(clustering.labels_v, clustering.labels_r,
                              self.memory(cluster_centroids(clustering.features_v, clustering.labels_v, clustering.num_v)),
                              self.memory(cluster_centroids(clustering.features_r, clustering.labels_r, clustering.num_r)))
        main_batches = (self.batches(clustering.labels_v, self.train.visible.camids, seed("clusters-visible")),
                        self.batches(clustering.labels_r, self.train.infrared.camids, seed("clusters-infrared")))
        mixed = self.mixed_target(clustering) if phase == 2 else None
        mixed_batches = None if mixed is None else (
            self.batches(mixed.labels_v, self.train.visible.camids, seed("mixed-visible")),
            self.batches(mixed.labels_r, self.train.infrared.camids, seed("mixed-infrared")))
        # Every iteration's indices are drawn up front (cheap), so the images can be augmented ahead of
        # time in `data.workers` processes; batch i is built under its own seed, the same for any count.
        steps = [[tuple(next(b) for b in main_batches),
                  tuple(next(b) for b in mixed_batches) if mixed_batches is not None else None]
                 for _ in range(self.cmc.iterations)]
        loader = training_loader(steps, self.train, self.ctx,
                                 seed=self.ctx.seed_for("cmc", global_epoch, "augment", per_rank=True))
        self.model.train()
        losses, losses_m = [], []
        t1 = time.time()
        bar = progress(zip(steps, loader), total=len(steps), desc=f"cmc phase {phase} epoch {epoch + 1}")
        for (main_step, mixed_step), (views, views_m) in bar:
            losses.append(self.contrast_step(views, main_step, main, optimizer))
            if mixed is not None:
                losses_m.append(self.contrast_step(views_m, mixed_step, mixed, optimizer))
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
        record = {"phase": phase, "loss": float(np.mean(losses)), "seconds_cluster": t_cluster,
                  "seconds_train": time.time() - t1, **clustering.metrics}
        if losses_m:
            record["loss_mixed"] = float(np.mean(losses_m))
        self.ctx.run.save_npz(f"pseudo_labels/cmc_phase{phase}_epoch{epoch:03d}.npz", **clustering.arrays())
        memories = {"visible": main.memory_v.features.detach().cpu(), "infrared": main.memory_r.features.detach().cpu()}
        if mixed is not None:
            memories["mixed"] = mixed.memory_v.features.detach().cpu()
        return record, memories, clustering


def _epoch_line(phase: int, epoch: int, epochs: int, record: dict) -> str:
    """The log line of a CMC epoch; empty on ranks that did not cluster (they have no counts)."""
    if "clusters_visible" not in record:
        return ""
    counts = f"{record['clusters_visible']}/{record['clusters_infrared']}"
    if phase == 2:
        counts += f"/{record['clusters_mixed']}"
    ari = (f", ARI V/R {record['ari_visible']:.3f}/{record['ari_infrared']:.3f}" if "ari_visible" in record else "")
    return (f"cmc phase {phase} epoch {epoch + 1}/{epochs}: loss {record['loss']:.3f}, "
            f"clusters V/R{'/M' if phase == 2 else ''} {counts}{ari}")


def cmc_stage(model: nn.Module, train: TrainSet, cmc: CMCConfig, cluster: ClusterConfig, ctx: RunContext,
              resume: dict | None = None) -> CMCResult:
    """Train both CMC phases; `resume` ({"epoch", "optimizer", "scheduler"}) continues after its epoch,
    counted over both phases. After every epoch the context's hooks log, evaluate and checkpoint."""
    trainer = CMCTrainer(model, train, cmc, cluster, ctx)
    total = cmc.phase1_epochs + cmc.phase2_epochs
    done = resume["epoch"] + 1 if resume is not None else 0  # epochs completed over both phases
    result = CMCResult(memories={}, last_round=None, epochs=0)
    offset = 0
    for phase, epochs in ((1, cmc.phase1_epochs), (2, cmc.phase2_epochs)):
        if epochs <= 0 or done >= offset + epochs:
            offset += max(epochs, 0)
            continue
        optimizer, scheduler = cmc_optimizer(model, cmc)
        start = 0
        if resume is not None and done > offset:
            optimizer.load_state_dict(resume["optimizer"])
            scheduler.load_state_dict(resume["scheduler"])
            start = done - offset
        for epoch in range(start, epochs):
            record, result.memories, result.last_round = trainer.epoch(phase, epoch, offset + epoch, optimizer)
            scheduler.step()
            record["lr"] = optimizer.param_groups[0]["lr"]
            result.epochs += 1
            ctx.after_epoch(EpochEnd("cmc", offset + epoch, total, model, optimizer, scheduler, record,
                                     _epoch_line(phase, epoch, epochs, record)))
        offset += epochs
    return result
