"""SCA's label confidence and prototypes (docs/method.md §6.3): one no-grad pass over every training
sample gives per-sample losses (→ a two-component GMM per modality → confidence w) and pre-BN
features (→ confidence-weighted class prototypes)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vireid.config import SCAConfig
from vireid.data.records import INFRARED, VISIBLE
from vireid.data.transforms import normalize_images
from vireid.data.samplers import rank_share, warmup_batches
from vireid.engine.context import RunContext
from vireid.engine.distributed import gather_batch, gather_rows, share
from vireid.engine.mmlm import SharedLabels
from vireid.engine.trainset import TrainSet, training_loader
from vireid.losses import class_prototypes, gmm_confidence, minmax_normalize
from vireid.models.agw import ModelOutput
from vireid.models.factory import unwrap_model

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

    def with_zero_prototypes(self) -> "Confidence":
        """The same confidences with prototypes at zero (the reference starts them there)."""
        return replace(self, proto_v1=torch.zeros_like(self.proto_v1), proto_v2=torch.zeros_like(self.proto_v2),
                       proto_r=torch.zeros_like(self.proto_r))


def _outputs(model: nn.Module, load: Callable[[np.ndarray], torch.Tensor], rows: np.ndarray, modality: str,
             ctx: RunContext) -> Iterator[tuple[np.ndarray, ModelOutput]]:
    """(batch rows, model outputs with return_all) over `rows` in eval-batch-size chunks."""
    for start in range(0, len(rows), ctx.eval_batch_size):
        idx = rows[start:start + ctx.eval_batch_size]
        with ctx.autocast():
            out = model(load(idx), modality=modality, return_all=True)
        yield idx, out  # outside autocast: the caller's losses run as before


@torch.no_grad()
def losses_and_features(model: nn.Module, load: Callable[[np.ndarray], torch.Tensor], rows: np.ndarray,
                        labels: np.ndarray, modality: str, ctx: RunContext) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample CE (N,) and pre-BN features (N, D) of `rows`; `load(index)` gives their model inputs."""
    ce, feats = [], []
    for idx, out in _outputs(model, load, rows, modality, ctx):
        y = torch.from_numpy(labels[idx]).to(ctx.device)
        ce.append(F.cross_entropy(out.logits.float(), y, reduction="none").cpu())
        feats.append(out.pooled.float().cpu())
    if not ce:
        return torch.zeros(0), torch.zeros(0, unwrap_model(model).feature_dim)
    return torch.cat(ce), torch.cat(feats)


def _loader(images: np.ndarray, device: torch.device, exchange: np.ndarray | None = None
            ) -> Callable[[np.ndarray], torch.Tensor]:
    """Rows of `images` as normalised model inputs; with `exchange` (a channel per image), channel
    exchange as the visible view 2 does it: that channel copied to all three."""
    def load(idx: np.ndarray) -> torch.Tensor:
        x = normalize_images(torch.from_numpy(np.ascontiguousarray(images[idx]))).to(device)
        if exchange is not None:
            channel = torch.from_numpy(exchange[idx]).to(device)
            x = x[torch.arange(len(idx), device=device), channel][:, None].expand(-1, 3, -1, -1)
        return x.contiguous()

    return load


# Per-sample results of one pass: CE and pre-BN features of visible view 1, view 2 and infrared,
# for the rows of each modality that hold a label.
PassResult = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def clean_pass(model: nn.Module, train: TrainSet, shared: SharedLabels, ctx: RunContext, epoch: int) -> PassResult:
    """The paper's pass: unaugmented single-modality batches, the model as it is (eval mode for the
    paper). View 2's exchanged channel is drawn per image from the run's seed, so it does not depend
    on how the rows are split. Under DDP each rank takes a contiguous share of the rows."""
    channels = np.random.default_rng(ctx.seed_for("sca", epoch, "exchange")).integers(0, 3, len(train.visible))
    views = ((_loader(train.visible.images, ctx.device), shared.labels_v, VISIBLE),
             (_loader(train.visible.images, ctx.device, channels), shared.labels_v, VISIBLE),
             (_loader(train.infrared.images, ctx.device), shared.labels_r, INFRARED))
    out = []
    for load, labels, modality in views:
        rows = np.flatnonzero(labels >= 0)
        start, stop = share(len(rows))
        ce, feats = losses_and_features(model, load, rows[start:stop], labels, modality, ctx)
        out += [gather_rows(ce, len(rows)), gather_rows(feats, len(rows))]
    return tuple(out)


@torch.no_grad()
def mixed_pass(model: nn.Module, train: TrainSet, shared: SharedLabels, sca: SCAConfig, ctx: RunContext,
               epoch: int) -> PassResult:
    """The released code's pass: augmented mixed batches (visible view 1 + view 2 + infrared, as in
    training) of `num_ids·num_instances` samples per modality, BN in train mode, so BatchNorm sees and
    keeps the statistics of mixed batches, never of one modality. Every labelled sample of the larger
    modality once, the smaller one cycled (its last visit counts). Under DDP every rank takes its share
    of each batch and the results are gathered, so every rank holds them all."""
    per = sca.num_ids * sca.num_instances
    rng = np.random.default_rng(ctx.seed_for("sca", epoch, "confidence-order"))
    batches = [(np.asarray(v), np.asarray(r)) for v, r in
               warmup_batches(shared.labels_v, shared.labels_r, per, rng, ctx.rank, ctx.world_size)]
    loader = training_loader(batches, train, ctx, seed=ctx.seed_for("sca", epoch, "confidence-augment", per_rank=True))
    rows_v, rows_r, parts = [], [], []
    for (idx_v, idx_r), views in zip(batches, loader):
        x = torch.cat(views).to(ctx.device, non_blocking=True)
        y = torch.from_numpy(np.r_[shared.labels_v[idx_v], shared.labels_v[idx_v], shared.labels_r[idx_r]])
        with ctx.autocast():
            out = model(x, modality="both", n_visible=2 * len(idx_v), return_all=True)
        parts.append((F.cross_entropy(out.logits.float(), y.to(ctx.device), reduction="none").cpu(),
                      out.pooled.float().cpu()))
        rows_v.append(idx_v)
        rows_r.append(idx_r)
    ce = gather_batch(torch.cat([p[0] for p in parts]))
    feats = gather_batch(torch.cat([p[1] for p in parts]))
    idx_v = gather_batch(torch.from_numpy(np.concatenate(rows_v)))
    idx_r = gather_batch(torch.from_numpy(np.concatenate(rows_r)))
    shares = [rank_share(per, r, ctx.world_size) for r in range(ctx.world_size)]  # gathered rank after rank
    views = _view_positions([s.stop - s.start for s in shares for _ in batches])
    return _per_sample(ce, feats, (idx_v, idx_v, idx_r), views, shared)


def _view_positions(sizes: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where view 1, view 2 and infrared results sit in batch results laid out [v1, v2, r] per batch
    of `sizes` samples per modality, batches one after the other (over ranks: rank after rank)."""
    ends = np.cumsum([3 * b for b in sizes])
    starts = ends - 3 * np.array(sizes)
    ranges = [[torch.arange(s + k * b, s + (k + 1) * b) for s, b in zip(starts, sizes)] for k in range(3)]
    return tuple(torch.cat(r) if r else torch.zeros(0, dtype=torch.long) for r in ranges)


def _per_sample(ce: torch.Tensor, feats: torch.Tensor, index: tuple, positions: tuple,
                shared: SharedLabels) -> PassResult:
    """Scatter batch results back to one value per labelled sample, in the order of
    `np.flatnonzero(labels >= 0)`, for view 1, view 2 and infrared (`index`: their sample indices,
    `positions`: where they sit in `ce`/`feats`)."""
    labels_of = (shared.labels_v, shared.labels_v, shared.labels_r)
    out = []
    for positions, index, labels in zip(positions, index, labels_of):
        rows = np.flatnonzero(labels >= 0)
        where = np.searchsorted(rows, index.numpy())  # each result's place among `rows`
        _, from_end = np.unique(where[::-1], return_index=True)  # a sample visited twice: its last visit
        keep = torch.from_numpy(len(where) - 1 - from_end)
        target = torch.from_numpy(where)[keep]
        ce_full = torch.zeros(len(rows)).index_copy_(0, target, ce[positions][keep])
        feats_full = torch.zeros(len(rows), feats.shape[1]).index_copy_(0, target, feats[positions][keep])
        out += [ce_full, feats_full]
    return tuple(out)


def _scatter(n: int, rows: np.ndarray, values: np.ndarray) -> torch.Tensor:
    """(n,) zeros with `values` at `rows`: per-sample weights for the whole modality (outliers 0)."""
    return torch.zeros(n).index_put_((torch.from_numpy(rows),), torch.as_tensor(values, dtype=torch.float32))


def compute_confidence(model: nn.Module, train: TrainSet, shared: SharedLabels, sca: SCAConfig, ctx: RunContext,
                       epoch: int) -> Confidence:
    """GMM confidence per modality (visible views pooled) and confidence-weighted class prototypes.

    `sca.confidence_weights: uniform` replaces the GMM's confidences by ones (prototypes become plain
    class means), to measure what the weighting does.

    `sca.confidence_bn` chooses the pass: "eval" (paper) the clean pass with BN on its running
    statistics; "train" (released code) the mixed, augmented pass with BN in train mode.
    """
    module = unwrap_model(model)  # collectives of the DDP wrapper are not needed: ranks shard by hand
    was_training = module.training
    module.train(sca.confidence_bn == "train")
    if sca.confidence_bn == "train":
        ce_v1, f_v1, ce_v2, f_v2, ce_r, f_r = mixed_pass(module, train, shared, sca, ctx, epoch)
    else:
        ce_v1, f_v1, ce_v2, f_v2, ce_r, f_r = clean_pass(module, train, shared, ctx, epoch)
    module.train(was_training)
    rows_v = np.flatnonzero(shared.labels_v >= 0)
    rows_r = np.flatnonzero(shared.labels_r >= 0)
    if sca.confidence_weights == "uniform":  # diagnostic: what the weighting adds on labels known to be right
        conf_v, conf_r = np.ones(2 * len(rows_v)), np.ones(len(rows_r))
    else:
        gmm = dict(seed=ctx.seed_for("sca", epoch, "gmm"), max_iter=sca.gmm_max_iter, tol=sca.gmm_tol,
                   reg_covar=sca.gmm_reg_covar)
        conf_v = gmm_confidence(np.r_[minmax_normalize(ce_v1.numpy()), minmax_normalize(ce_v2.numpy())], **gmm)
        conf_r = gmm_confidence(minmax_normalize(ce_r.numpy()), **gmm)
    w_v1 = _scatter(len(train.visible), rows_v, conf_v[: len(rows_v)])
    w_v2 = _scatter(len(train.visible), rows_v, conf_v[len(rows_v):])
    w_r = _scatter(len(train.infrared), rows_r, conf_r)
    yv, yr = torch.from_numpy(shared.labels_v[rows_v]), torch.from_numpy(shared.labels_r[rows_r])
    k = shared.num_classes
    protos = [class_prototypes(f, y, w[rows], k) for f, y, w, rows in
              ((f_v1, yv, w_v1, rows_v), (f_v2, yv, w_v2, rows_v), (f_r, yr, w_r, rows_r))]
    summary = {"confidence_visible": float(np.mean(conf_v)) if len(conf_v) else 0.0,
               "confidence_infrared": float(np.mean(conf_r)) if len(conf_r) else 0.0,
               "ce_visible": float(ce_v1.mean()) if len(ce_v1) else 0.0,
               "ce_infrared": float(ce_r.mean()) if len(ce_r) else 0.0}
    return Confidence(w_v1, w_v2, w_r, *(p.to(ctx.device) for p in protos), summary=summary)


@torch.no_grad()
def prototype_classifier(model: nn.Module, train: TrainSet, shared: SharedLabels, ctx: RunContext,
                         temperature: float = 0.05) -> torch.Tensor:
    """Classifier rows (K, D) for `sca.classifier_init: prototypes`: each shared class's mean unit
    BN-neck direction (eval mode, both modalities' unaugmented images), divided by
    temperature × the mean BN-neck norm, so that a sample's first logits are about its cosine to each
    class over the temperature (0.05, the CMC memories' own). The paper's classifier starts at
    N(0, 0.001) instead: its first epochs learn the classes while the backbone follows them.
    Every rank runs the whole pass (one forward pass per training image, no augmentation)."""
    module = unwrap_model(model)
    was_training = module.training
    module.eval()
    feats, labels = [], []
    for images, modality_labels, modality in ((train.visible.images, shared.labels_v, VISIBLE),
                                              (train.infrared.images, shared.labels_r, INFRARED)):
        for idx, out in _outputs(module, _loader(images, ctx.device), np.flatnonzero(modality_labels >= 0),
                                 modality, ctx):
            feats.append(out.bn.float().cpu())
            labels.append(modality_labels[idx])
    module.train(was_training)
    if not feats:
        raise ValueError("no labelled training sample to build the classifier from")
    f = torch.cat(feats)
    y = torch.from_numpy(np.concatenate(labels)).long()
    means = class_prototypes(F.normalize(f, dim=1), y, torch.ones(len(y)), shared.num_classes)
    return F.normalize(means, dim=1) / (temperature * f.norm(dim=1).mean().clamp_min(1e-12))
