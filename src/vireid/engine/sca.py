"""SCA stage: soft cluster-level alignment on MMLM's shared labels (METHOD §6.3).

Per epoch after warm-up: one no-grad pass over every training sample gives per-sample losses
(→ GMM label confidence w) and pre-BN features (→ confidence-weighted class prototypes); training then
minimises L_wCE + L_tri + λ_intra·L_intra + λ_inter·L_inter on P identities × (4 visible in two views
+ 4 infrared) batches.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from vireid.config import Config
from vireid.engine.mmlm import SharedLabels
from vireid.engine.trainset import TrainSet


def sca_lr_factor(epoch: int, warmup: int = 10, milestones: tuple[int, ...] = (20, 40)) -> float:
    """lr(e)/base: linear warm-up (e+1)/warmup for e < warmup, then ×0.1 at each milestone."""
    if epoch < warmup:
        return (epoch + 1) / warmup
    return 0.1 ** sum(epoch >= m for m in milestones)


def sca_optimizer(model, cfg: Config) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """SGD (momentum, Nesterov) with the base lr on neck + classifier and ×backbone_lr_mult elsewhere."""
    s = cfg.sca
    head, backbone = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (head if name.startswith(("bottleneck", "classifier")) else backbone).append(p)
    opt = torch.optim.SGD([{"params": backbone, "lr": s.lr * s.backbone_lr_mult},
                           {"params": head, "lr": s.lr}],
                          lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay, nesterov=True)
    milestones = tuple(s.lr_milestones)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: sca_lr_factor(e, s.lr_warmup_epochs, milestones))
    return opt, sched


@dataclass
class Confidence:
    """Per-sample label confidence w and class prototypes (K, D) for visible views 1, 2 and infrared."""

    w_v1: torch.Tensor
    w_v2: torch.Tensor
    w_r: torch.Tensor
    proto_v1: torch.Tensor
    proto_v2: torch.Tensor
    proto_r: torch.Tensor
    summary: dict


@torch.no_grad()
def _pass(model, images: np.ndarray, rows: np.ndarray, labels: np.ndarray, infrared: bool, exchange: bool,
          cfg: Config, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample CE and pre-BN features of `rows` (unaugmented; view 2 = channel exchange)."""
    from vireid.data.transforms import ChannelExchange, normalize_batch

    swap = ChannelExchange(gray=2)
    ce, feats = [], []
    bs = cfg.data.eval_batch_size
    for start in range(0, len(rows), bs):
        idx = rows[start:start + bs]
        x = normalize_batch(torch.from_numpy(np.ascontiguousarray(images[idx]))).to(device)
        if exchange:
            x = torch.stack([swap(img) for img in x])
        out = model(x, modality="infrared" if infrared else "visible", return_all=True)
        y = torch.from_numpy(labels[idx]).to(device)
        ce.append(F.cross_entropy(out.logits.float(), y, reduction="none").cpu())
        feats.append(out.pooled.float().cpu())
    return torch.cat(ce), torch.cat(feats)


def compute_confidence(model, train: TrainSet, shared: SharedLabels, cfg: Config, device,
                       seed: int, zero_prototypes: bool = False) -> Confidence:
    """GMM confidence per modality (visible views pooled) and weighted class prototypes."""
    from vireid.losses import class_prototypes, gmm_confidence, minmax_normalize

    s = cfg.sca
    was_training = model.training
    model.train(s.confidence_bn == "train")
    rows_v = np.flatnonzero(shared.labels_v >= 0)
    rows_r = np.flatnonzero(shared.labels_r >= 0)
    ce_v1, f_v1 = _pass(model, train.visible.images, rows_v, shared.labels_v, False, False, cfg, device)
    ce_v2, f_v2 = _pass(model, train.visible.images, rows_v, shared.labels_v, False, True, cfg, device)
    ce_r, f_r = _pass(model, train.infrared.images, rows_r, shared.labels_r, True, False, cfg, device)
    model.train(was_training)
    gmm = dict(seed=seed, max_iter=s.gmm_max_iter, tol=s.gmm_tol, reg_covar=s.gmm_reg_covar)
    loss_v = np.r_[minmax_normalize(ce_v1.numpy()), minmax_normalize(ce_v2.numpy())]
    conf_v = gmm_confidence(loss_v, **gmm)
    conf_r = gmm_confidence(minmax_normalize(ce_r.numpy()), **gmm)
    k = shared.num_classes
    full = lambda n, rows, vals: torch.zeros(n).index_put_((torch.from_numpy(rows),), torch.as_tensor(vals, dtype=torch.float32))  # noqa: E731
    w_v1 = full(len(train.visible), rows_v, conf_v[: len(rows_v)])
    w_v2 = full(len(train.visible), rows_v, conf_v[len(rows_v):])
    w_r = full(len(train.infrared), rows_r, conf_r)
    yv, yr = torch.from_numpy(shared.labels_v[rows_v]), torch.from_numpy(shared.labels_r[rows_r])
    protos = [class_prototypes(f, y, w[rows], k) for f, y, w, rows in
              ((f_v1, yv, w_v1, rows_v), (f_v2, yv, w_v2, rows_v), (f_r, yr, w_r, rows_r))]
    if zero_prototypes:
        protos = [torch.zeros_like(p) for p in protos]
    summary = {"confidence_visible": float(np.mean(conf_v)) if len(conf_v) else 0.0,
               "confidence_infrared": float(np.mean(conf_r)) if len(conf_r) else 0.0,
               "ce_visible": float(ce_v1.mean()) if len(ce_v1) else 0.0,
               "ce_infrared": float(ce_r.mean()) if len(ce_r) else 0.0}
    return Confidence(w_v1, w_v2, w_r, *(p.to(device) for p in protos), summary=summary)


def sca_losses(out, y_v: torch.Tensor, y_r: torch.Tensor, w: torch.Tensor, conf: Confidence | None,
               cfg: Config, epoch: int) -> dict[str, torch.Tensor]:
    """The SCA objective's terms for one batch laid out as [visible view 1, visible view 2, infrared]."""
    from vireid.losses import batch_hard_triplet, inter_modality_loss, intra_alignment_loss, weighted_cross_entropy

    s = cfg.sca
    bv, br = len(y_v), len(y_r)
    y = torch.cat([y_v, y_v, y_r])
    f = out.pooled.float()
    terms = {"wce": weighted_cross_entropy(out.logits.float(), y, w)}
    if conf is None:  # warm-up: plain cross-entropy
        return terms
    terms["triplet"] = batch_hard_triplet(f, y, margin=s.triplet_margin)
    f_v1, f_v2, f_r = f[:bv], f[bv:2 * bv], f[2 * bv:]
    if s.intra and epoch >= s.intra_start:
        w_v1, w_v2, w_r = w[:bv], w[bv:2 * bv], w[2 * bv:]
        d = s.intra_distance
        visible = 0.5 * (intra_alignment_loss(f_v1, conf.proto_v1[y_v], w_v1, d)
                         + intra_alignment_loss(f_v2, conf.proto_v2[y_v], w_v2, d))
        infrared = intra_alignment_loss(f_r, conf.proto_r[y_r], w_r, d)
        terms["intra"] = s.lambda_intra * (bv * visible + br * infrared) / (bv + br)
    if s.inter and epoch >= s.inter_start:
        terms["inter"] = s.lambda_inter * inter_modality_loss([f_v1, f_v2], y_v, f_r, y_r, form=s.inter_form)
    return terms


def _warmup_batches(shared: SharedLabels, cfg: Config, epoch: int):
    """Warm-up batches covering every visible sample once per epoch, paired with infrared samples
    (the infrared permutation is cycled when it is the shorter list)."""
    from vireid.engine.distributed import world

    rank, size = world()
    rng = np.random.default_rng([cfg.seed, 7, epoch])
    rows_v = rng.permutation(np.flatnonzero(shared.labels_v >= 0))
    rows_r = rng.permutation(np.flatnonzero(shared.labels_r >= 0))
    per = cfg.sca.num_ids * cfg.sca.num_instances
    n = max(1, math.ceil(max(len(rows_v), len(rows_r)) / per))
    take_v = np.resize(rows_v, n * per).reshape(n, per)
    take_r = np.resize(rows_r, n * per).reshape(n, per)
    share = per // size
    for b in range(n):
        yield take_v[b, rank * share:(rank + 1) * share], take_r[b, rank * share:(rank + 1) * share]


def _identity_batches(shared: SharedLabels, cfg: Config, epoch: int):
    from vireid.data.samplers import IdentitySampler
    from vireid.engine.distributed import world

    rank, size = world()
    s = cfg.sca
    iterations = s.iterations or max(1, math.ceil(int((shared.labels_v >= 0).sum()) / (s.num_ids * s.num_instances)))
    sampler = IdentitySampler(shared.labels_v, shared.labels_r, num_ids=s.num_ids, num_instances=s.num_instances,
                              iterations=iterations, seed=cfg.seed, rank=rank, world_size=size)
    sampler.set_epoch(epoch)
    return iter(sampler)


def sca_epoch(model, train: TrainSet, shared: SharedLabels, cfg: Config, device, epoch: int, optimizer,
              transforms, amp) -> dict:
    from vireid.engine.trainset import training_loader

    warm = epoch < cfg.sca.warmup_epochs
    t0 = time.time()
    conf = None
    record: dict = {}
    if not warm:
        zero = cfg.sca.prototype_init == "zero" and epoch == cfg.sca.warmup_epochs
        conf = compute_confidence(model, train, shared, cfg, device, seed=cfg.seed + epoch, zero_prototypes=zero)
        record.update(conf.summary)
    record["seconds_confidence"] = time.time() - t0
    model.train()
    batches = [(np.asarray(v), np.asarray(r)) for v, r in
               (_warmup_batches(shared, cfg, epoch) if warm else _identity_batches(shared, cfg, epoch))]
    loader = training_loader(batches, train, transforms, cfg, device, seed=cfg.seed * 1000 + 700 + epoch)
    sums: dict[str, float] = {}
    steps = 0
    t1 = time.time()
    for (idx_v, idx_r), views in tqdm(zip(batches, loader), total=len(batches), desc=f"sca epoch {epoch}",
                                      leave=False, disable=None):
        x = torch.cat(views).to(device, non_blocking=True)
        y_v = torch.from_numpy(shared.labels_v[idx_v]).to(device)
        y_r = torch.from_numpy(shared.labels_r[idx_r]).to(device)
        if conf is None:
            w = torch.ones(2 * len(idx_v) + len(idx_r), device=device)
        else:
            w = torch.cat([conf.w_v1[idx_v], conf.w_v2[idx_v], conf.w_r[idx_r]]).to(device)
        with amp():
            out = model(x, modality="both", n_visible=2 * len(idx_v))
        terms = sca_losses(out, y_v, y_r, w, conf, cfg, epoch)
        loss = sum(terms.values())
        if not torch.isfinite(loss):
            from vireid.errors import VireidError

            raise VireidError(f"SCA epoch {epoch}: the loss became non-finite ("
                              + ", ".join(f"{k} {float(v):.3g}" for k, v in terms.items())
                              + "); lower sca.lr or use sca.intra_distance=mse")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach())
        sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
        steps += 1
    record.update({f"loss_{k}" if k != "loss" else k: v / max(steps, 1) for k, v in sums.items()})
    record["seconds_train"] = time.time() - t1
    record["iterations"] = steps
    return record


def prepare_sca_model(model, shared: SharedLabels, device):
    """Give the model a fresh classifier over the shared label space (init N(0, 0.001))."""
    module = model.module if hasattr(model, "module") else model
    module.reset_classifier(shared.num_classes)
    return model.to(device)


def sca_stage(model, train: TrainSet, shared: SharedLabels, cfg: Config, run, device, resume: dict | None = None,
              on_epoch_end=None, evaluate=None):
    """Train the SCA stage; `resume` is a checkpoint of this stage. Returns the trained model."""
    from vireid.engine.trainset import train_transforms
    from vireid.engine.device import autocast

    if shared.num_classes == 0:
        from vireid.errors import VireidError

        raise VireidError("SCA stage: the shared label space is empty (no infrared clusters)")
    transforms = train_transforms(cfg)
    amp = lambda: autocast(device, cfg.model.amp)  # noqa: E731
    optimizer, scheduler = sca_optimizer(model, cfg)
    start = 0
    if resume is not None:
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        start = resume["epoch"] + 1
    for epoch in range(start, cfg.sca.epochs):
        record = sca_epoch(model, train, shared, cfg, device, epoch, optimizer, transforms, amp)
        record["lr"] = optimizer.param_groups[-1]["lr"]
        scheduler.step()
        run.log_metrics("epoch", stage="sca", epoch=epoch, **record)
        run.log(f"sca epoch {epoch + 1}/{cfg.sca.epochs}: loss {record.get('loss', float('nan')):.3f} "
                + " ".join(f"{k[5:]} {v:.3f}" for k, v in record.items() if k.startswith("loss_")))
        if evaluate is not None:  # the pipeline's periodic evaluator decides when
            evaluate("sca", epoch)
        if on_epoch_end is not None:
            on_epoch_end("sca", epoch, optimizer, scheduler, None)
    return model
