"""SCA's label confidence and prototypes (docs/method.md §6.3): one no-grad pass over every training
sample gives per-sample losses (→ a two-component GMM per modality → confidence w) and pre-BN
features (→ confidence-weighted class prototypes)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vireid.config import SCAConfig
from vireid.data.transforms import ChannelExchange, normalize_images
from vireid.engine.context import RunContext
from vireid.engine.mmlm import SharedLabels
from vireid.engine.trainset import TrainSet
from vireid.losses import class_prototypes, gmm_confidence, minmax_normalize

VIEWS = ("visible", "exchange", "infrared")  # visible view 1, visible view 2 (channel exchange), infrared


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


@torch.no_grad()
def losses_and_features(model: nn.Module, images: np.ndarray, rows: np.ndarray, labels: np.ndarray, view: str,
                        ctx: RunContext) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample CE (N,) and pre-BN features (N, D) of `rows`, unaugmented, in one of `VIEWS`."""
    swap = ChannelExchange(gray=2)
    ce, feats = [], []
    bs = ctx.eval_batch_size
    for start in range(0, len(rows), bs):
        idx = rows[start:start + bs]
        x = normalize_images(torch.from_numpy(np.ascontiguousarray(images[idx]))).to(ctx.device)
        if view == "exchange":
            x = torch.stack([swap(img) for img in x])
        out = model(x, modality="infrared" if view == "infrared" else "visible", return_all=True)
        y = torch.from_numpy(labels[idx]).to(ctx.device)
        ce.append(F.cross_entropy(out.logits.float(), y, reduction="none").cpu())
        feats.append(out.pooled.float().cpu())
    return torch.cat(ce), torch.cat(feats)


def _scatter(n: int, rows: np.ndarray, values: np.ndarray) -> torch.Tensor:
    """(n,) zeros with `values` at `rows`: per-sample weights for the whole modality (outliers 0)."""
    return torch.zeros(n).index_put_((torch.from_numpy(rows),), torch.as_tensor(values, dtype=torch.float32))


def compute_confidence(model: nn.Module, train: TrainSet, shared: SharedLabels, sca: SCAConfig, ctx: RunContext,
                       seed: int) -> Confidence:
    """GMM confidence per modality (visible views pooled) and confidence-weighted class prototypes."""
    was_training = model.training
    model.train(sca.confidence_bn == "train")
    rows_v = np.flatnonzero(shared.labels_v >= 0)
    rows_r = np.flatnonzero(shared.labels_r >= 0)
    ce_v1, f_v1 = losses_and_features(model, train.visible.images, rows_v, shared.labels_v, "visible", ctx)
    ce_v2, f_v2 = losses_and_features(model, train.visible.images, rows_v, shared.labels_v, "exchange", ctx)
    ce_r, f_r = losses_and_features(model, train.infrared.images, rows_r, shared.labels_r, "infrared", ctx)
    model.train(was_training)
    gmm = dict(seed=seed, max_iter=sca.gmm_max_iter, tol=sca.gmm_tol, reg_covar=sca.gmm_reg_covar)
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
