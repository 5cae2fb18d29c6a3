"""SCA stage: soft cluster-level alignment on MMLM's shared labels (docs/method.md §6.3).

Per epoch after warm-up: the confidence pass (engine/confidence.py) gives per-sample label confidence
w and class prototypes; training then minimises L_wCE + L_tri + λ_intra·L_intra + λ_inter·L_inter on
P identities × (4 visible in two views + 4 infrared) batches.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from vireid.config import Config, SCAConfig
from vireid.data.samplers import IdentitySampler, warmup_batches
from vireid.engine.confidence import Confidence, compute_confidence, prototype_classifier
from vireid.engine.context import RunContext
from vireid.engine.distributed import gather_batch, gather_with_grad, is_distributed, share_weight
from vireid.engine.hooks import EpochEnd
from vireid.engine.mmlm import SharedLabels
from vireid.engine.trainset import TrainSet, training_loader
from vireid.errors import VireidError
from vireid.losses import batch_hard_triplet, inter_modality_loss, intra_alignment_loss, weighted_cross_entropy
from vireid.models.agw import ModelOutput
from vireid.models.factory import unwrap_model
from vireid.progress import progress

# Terms that are means over this rank's samples (the others are computed on the gathered global batch)
LOCAL_TERMS = ("wce", "intra")

__all__ = ["SCAResult", "Confidence", "sca_losses", "sca_lr_factor", "sca_optimizer", "sca_stage", "start_classifier"]


@dataclass
class SCAResult:
    """The trained model and how many epochs this call trained."""

    model: nn.Module
    epochs: int


def sca_lr_factor(epoch: int, warmup: int = 10, milestones: tuple[int, ...] = (20, 40)) -> float:
    """lr(e)/base: linear warm-up (e+1)/warmup for e < warmup, then ×0.1 at each milestone."""
    if epoch < warmup:
        return (epoch + 1) / warmup
    return 0.1 ** sum(epoch >= m for m in milestones)


def sca_optimizer(model: nn.Module, sca: SCAConfig) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """SGD (momentum, Nesterov) with the base lr on neck + classifier and ×backbone_lr_mult elsewhere.

    The groups come from the unwrapped model (a DDP wrapper prefixes every name with "module.").
    """
    groups = unwrap_model(model).parameter_groups()
    opt = torch.optim.SGD([{"params": groups["backbone"], "lr": sca.lr * sca.backbone_lr_mult},
                           {"params": groups["head"], "lr": sca.lr}],
                          lr=sca.lr, momentum=sca.momentum, weight_decay=sca.weight_decay, nesterov=True)
    milestones = tuple(sca.lr_milestones)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: sca_lr_factor(e, sca.lr_warmup_epochs, milestones))
    return opt, sched


def sca_losses(out: ModelOutput, y_v: torch.Tensor, y_r: torch.Tensor, w: torch.Tensor, conf: Confidence | None,
               cfg: SCAConfig | Config, epoch: int) -> dict[str, torch.Tensor]:
    """The SCA objective's terms for one batch laid out as [visible view 1, visible view 2, infrared].

    `cfg` is the SCA config section (a whole Config is accepted too). Seven parameters: this is the
    published composition's interface, kept stable for scripts that check it term by term.
    """
    s = cfg.sca if isinstance(cfg, Config) else cfg
    bv, br = len(y_v), len(y_r)
    y = torch.cat([y_v, y_v, y_r])
    f = out.pooled.float()
    terms = {"wce": weighted_cross_entropy(out.logits.float(), y, w)}
    if conf is None:  # warm-up: plain cross-entropy
        return terms
    f_v1, f_v2, f_r = f[:bv], f[bv:2 * bv], f[2 * bv:]
    # triplet and MMD compare identities across the whole batch: under DDP, every rank's share
    g_v1, g_v2, g_r, g_yv, g_yr = _global_batch(f_v1, f_v2, f_r, y_v, y_r)
    terms["triplet"] = batch_hard_triplet(torch.cat([g_v1, g_v2, g_r]), torch.cat([g_yv, g_yv, g_yr]),
                                          margin=s.triplet_margin)
    if s.intra and epoch >= s.intra_start:
        w_v1, w_v2, w_r = w[:bv], w[bv:2 * bv], w[2 * bv:]
        d = s.intra_distance
        visible = 0.5 * (intra_alignment_loss(f_v1, conf.proto_v1[y_v], w_v1, d)
                         + intra_alignment_loss(f_v2, conf.proto_v2[y_v], w_v2, d))
        infrared = intra_alignment_loss(f_r, conf.proto_r[y_r], w_r, d)
        if s.intra_form == "reference":  # both modalities' sums over the visible count (released main.py)
            terms["intra"] = s.lambda_intra * (visible + infrared * br / bv)
        else:  # the mean over the batch's samples, a visible sample counting its two views once
            terms["intra"] = s.lambda_intra * (bv * visible + br * infrared) / (bv + br)
    if s.inter and epoch >= s.inter_start:
        terms["inter"] = s.lambda_inter * inter_modality_loss([g_v1, g_v2], g_yv, g_r, g_yr, form=s.inter_form)
    return terms


def rank_objective(terms: dict[str, torch.Tensor], rows: int, global_rows: int) -> torch.Tensor:
    """What one rank backpropagates for its `rows` of a global batch of `global_rows` per modality: the
    per-sample means (LOCAL_TERMS) weighted by its share (`share_weight`), so that DDP's average of the
    ranks' gradients is the global batch's mean, plus the terms computed on the gathered global batch
    as they are. Without DDP (or with equal shares) the plain sum of the terms."""
    weight = share_weight(rows, global_rows)
    return sum(v * weight if k in LOCAL_TERMS else v for k, v in terms.items())


def _global_batch(f_v1: torch.Tensor, f_v2: torch.Tensor, f_r: torch.Tensor, y_v: torch.Tensor, y_r: torch.Tensor
                  ) -> tuple[torch.Tensor, ...]:
    """The batch's three views and labels over all DDP ranks (gradients reach this rank's rows);
    the batch itself in one process."""
    if not is_distributed():
        return f_v1, f_v2, f_r, y_v, y_r
    return (gather_with_grad(f_v1), gather_with_grad(f_v2), gather_with_grad(f_r), gather_batch(y_v),
            gather_batch(y_r))


class SCATrainer:
    """One SCA epoch at a time: confidence pass (after warm-up), then the weighted objective."""

    def __init__(self, model: nn.Module, train: TrainSet, shared: SharedLabels, sca: SCAConfig,
                 ctx: RunContext) -> None:
        self.model, self.train, self.shared, self.sca, self.ctx = model, train, shared, sca, ctx
        self.scaler = ctx.grad_scaler()
        self.global_batch = sca.num_ids * sca.num_instances  # samples per modality in this epoch's global batches

    def batches(self, epoch: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Warm-up: every sample once, in random order; later: P identities × K per modality."""
        s, shared, ctx = self.sca, self.shared, self.ctx
        per = self.global_batch = s.num_ids * s.num_instances
        if epoch < s.warmup_epochs:
            rng = np.random.default_rng(ctx.seed_for("sca", epoch, "warmup"))
            found = warmup_batches(shared.labels_v, shared.labels_r, per, rng, ctx.rank, ctx.world_size)
        else:
            iterations = s.iterations or max(1, math.ceil(int((shared.labels_v >= 0).sum()) / per))
            sampler = IdentitySampler(shared.labels_v, shared.labels_r, num_ids=s.num_ids,
                                      num_instances=s.num_instances, iterations=iterations,
                                      seed=ctx.seed_for("sca", epoch, "identities"), rank=ctx.rank,
                                      world_size=ctx.world_size)
            self.global_batch = sampler.batch_size  # P·K, P smaller when fewer identities qualify
            found = iter(sampler)
        return [(np.asarray(v), np.asarray(r)) for v, r in found]

    def confidence(self, epoch: int) -> Confidence | None:
        """None during warm-up; else this epoch's confidences and prototypes."""
        s = self.sca
        if epoch < s.warmup_epochs:
            return None
        conf = compute_confidence(self.model, self.train, self.shared, s, self.ctx, epoch)
        if s.prototype_init == "zero" and epoch == s.warmup_epochs:
            conf = conf.with_zero_prototypes()
        return conf

    def step(self, views: list[torch.Tensor], step: tuple, conf: Confidence | None, epoch: int,
             optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
        """One optimiser step on a batch; returns its loss terms (and their sum under "loss")."""
        idx_v, idx_r = step
        device = self.ctx.device
        x = torch.cat(views).to(device, non_blocking=True)
        y_v = torch.from_numpy(self.shared.labels_v[idx_v]).to(device)
        y_r = torch.from_numpy(self.shared.labels_r[idx_r]).to(device)
        if conf is None:
            w = torch.ones(2 * len(idx_v) + len(idx_r), device=device)
        else:
            w = torch.cat([conf.w_v1[idx_v], conf.w_v2[idx_v], conf.w_r[idx_r]]).to(device)
        with self.ctx.autocast():
            out = self.model(x, modality="both", n_visible=2 * len(idx_v))
        terms = sca_losses(out, y_v, y_r, w, conf, self.sca, epoch)
        loss = sum(terms.values())
        trained = rank_objective(terms, len(idx_v), self.global_batch)
        if not torch.isfinite(loss):
            raise VireidError(f"SCA epoch {epoch + 1}: the loss became non-finite ("
                              + ", ".join(f"{k} {float(v):.3g}" for k, v in terms.items())
                              + "); lower sca.lr, or use sca.intra_distance=l2sq_unit if it is l2sq")
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(trained).backward()
        self.scaler.step(optimizer)
        self.scaler.update()
        return {**terms, "loss": loss}

    def epoch(self, epoch: int, optimizer: torch.optim.Optimizer) -> dict:
        """Train one epoch; returns its log record (mean loss terms, confidences, timings)."""
        t0 = time.time()
        conf = self.confidence(epoch)
        record: dict = dict(conf.summary) if conf is not None else {}
        record["seconds_confidence"] = time.time() - t0
        self.model.train()
        batches = self.batches(epoch)
        loader = training_loader(batches, self.train, self.ctx, seed=self.ctx.seed_for("sca", epoch, "augment",
                                                                                       per_rank=True))
        sums: dict[str, float] = {}
        t1 = time.time()
        for step, views in progress(zip(batches, loader), total=len(batches), desc=f"sca epoch {epoch + 1}"):
            for k, v in self.step(views, step, conf, epoch, optimizer).items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
        steps = max(len(batches), 1)
        record.update({k if k == "loss" else f"loss_{k}": v / steps for k, v in sums.items()})
        record["seconds_train"] = time.time() - t1
        record["iterations"] = len(batches)
        return record


def prepare_sca_model(model: nn.Module, shared: SharedLabels, device: torch.device) -> nn.Module:
    """Give the model a fresh classifier over the shared label space (init N(0, 0.001))."""
    unwrap_model(model).reset_classifier(shared.num_classes)
    return model.to(device)


def start_classifier(model: nn.Module, train: TrainSet, shared: SharedLabels, sca: SCAConfig, ctx: RunContext) -> None:
    """`sca.classifier_init: prototypes` replaces the fresh classifier's rows by `prototype_classifier`'s
    (every rank computes the same rows); `random` keeps the paper's N(0, 0.001)."""
    if sca.classifier_init == "prototypes":
        module = unwrap_model(model)
        rows = prototype_classifier(module, train, shared, ctx)
        module.classifier.weight.data.copy_(rows.to(module.classifier.weight))


def _epoch_line(epoch: int, epochs: int, record: dict) -> str:
    return (f"sca epoch {epoch + 1}/{epochs}: loss {record.get('loss', float('nan')):.3f} "
            + " ".join(f"{k[5:]} {v:.3f}" for k, v in record.items() if k.startswith("loss_")))


def sca_stage(model: nn.Module, train: TrainSet, shared: SharedLabels, sca: SCAConfig, ctx: RunContext,
              resume: dict | None = None) -> SCAResult:
    """Train the SCA stage; `resume` ({"epoch", "optimizer", "scheduler"}) continues after its epoch.
    After every epoch the context's hooks log, evaluate and checkpoint."""
    if shared.num_classes == 0:
        raise VireidError("SCA stage: the shared label space is empty (no infrared clusters)")
    trainer = SCATrainer(model, train, shared, sca, ctx)
    optimizer, scheduler = sca_optimizer(model, sca)
    start = 0
    if resume is None:
        start_classifier(model, train, shared, sca, ctx)
    else:
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        start = resume["epoch"] + 1
    for epoch in range(start, sca.epochs):
        record = trainer.epoch(epoch, optimizer)
        record["lr"] = optimizer.param_groups[-1]["lr"]
        scheduler.step()
        ctx.after_epoch(EpochEnd("sca", epoch, sca.epochs, model, optimizer, scheduler, record,
                                 _epoch_line(epoch, sca.epochs, record)))
    return SCAResult(model, sca.epochs - start)
