"""Multi-kernel MMD and the stop-gradient inter-modality loss (L_inter of the SCA stage, docs/method.md §6.3)."""

from __future__ import annotations

import torch

from vireid.errors import ConfigError
from vireid.losses.cluster_memory import occurrence_rank

__all__ = ["mmd2", "per_identity_mmd2", "inter_modality_loss", "INTER_FORMS"]

INTER_FORMS = ("paper", "reference")


def _batched_mmd2(x: torch.Tensor, x_mask: torch.Tensor, y: torch.Tensor, y_mask: torch.Tensor,
                  num_kernels: int, kernel_mul: float) -> torch.Tensor:
    """Biased MMD² for P padded set pairs: x (P, S, D), y (P, T, D), masks (P, S), (P, T) → (P,).

    Kernel Σ_q exp(−‖a−b‖²/(σ·mul^q)), q = 0..num_kernels−1, with σ = mean off-diagonal squared
    distance over the joint set / mul^(num_kernels // 2) (= /4 by default), without gradient.
    MMD² = wᵀKw with w = 1/n on x, −1/m on y, 0 on padding.
    """
    joint = torch.cat([x, y], 1)  # (P, S+T, D)
    mask = torch.cat([x_mask, y_mask], 1).to(joint.dtype)
    sq = (joint * joint).sum(2)
    eye = torch.eye(joint.shape[1], dtype=torch.bool, device=joint.device)
    d2 = (sq[:, :, None] + sq[:, None, :] - 2.0 * joint @ joint.transpose(1, 2)).clamp_min(0.0)
    d2 = d2.masked_fill(eye, 0.0)
    with torch.no_grad():
        pair_mask = mask[:, :, None] * mask[:, None, :] * (~eye).to(joint.dtype)
        mean_d2 = (d2 * pair_mask).sum((1, 2)) / pair_mask.sum((1, 2)).clamp_min(1.0)
        sigma = (mean_d2 / kernel_mul ** (num_kernels // 2)).clamp_min(1e-12)
        scales = sigma[:, None] * kernel_mul ** torch.arange(num_kernels, device=joint.device,
                                                             dtype=joint.dtype)  # (P, q)
    kernel = torch.exp(-d2[..., None] / scales[:, None, None, :]).sum(3)  # (P, S+T, S+T)
    nx = x_mask.sum(1, keepdim=True).clamp_min(1).to(joint.dtype)
    ny = y_mask.sum(1, keepdim=True).clamp_min(1).to(joint.dtype)
    w = torch.cat([x_mask.to(joint.dtype) / nx, -y_mask.to(joint.dtype) / ny], 1)  # (P, S+T)
    return torch.einsum("pi,pij,pj->p", w, kernel, w)


def mmd2(x: torch.Tensor, y: torch.Tensor, num_kernels: int = 5, kernel_mul: float = 2.0) -> torch.Tensor:
    """Biased multi-Gaussian-kernel MMD² between sets x (n, D) and y (m, D): a scalar."""
    ones_x = torch.ones(1, x.shape[0], dtype=torch.bool, device=x.device)
    ones_y = torch.ones(1, y.shape[0], dtype=torch.bool, device=y.device)
    return _batched_mmd2(x[None], ones_x, y[None], ones_y, num_kernels, kernel_mul)[0]


def _pad_by_identity(x: torch.Tensor, labels: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of x grouped by identity (ids sorted): (P, S, D) zero-padded and its (P, S) mask."""
    keep = torch.isin(labels, ids)
    slot = torch.searchsorted(ids, labels[keep])
    rank = occurrence_rank(slot)
    width = int(rank.max()) + 1
    padded = x.new_zeros(ids.numel(), width, x.shape[1]).index_put((slot, rank), x[keep])
    mask = torch.zeros(ids.numel(), width, dtype=torch.bool, device=x.device).index_put(
        (slot, rank), torch.ones_like(slot, dtype=torch.bool))
    return padded, mask


def per_identity_mmd2(x: torch.Tensor, labels_x: torch.Tensor, y: torch.Tensor, labels_y: torch.Tensor,
                      num_kernels: int = 5, kernel_mul: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    """MMD²(x of identity c, y of identity c) for every identity present in both sets, at once.

    x (n, D), labels_x (n,), y (m, D), labels_y (m,) → (values (P,), identities (P,) sorted).
    Detach x or y before the call to stop the gradient on that side.
    """
    labels_x, labels_y = labels_x.reshape(-1).long(), labels_y.reshape(-1).long()
    ids_x = torch.unique(labels_x)
    ids = ids_x[torch.isin(ids_x, labels_y)]
    if ids.numel() == 0:
        return x.new_zeros(0), ids
    xp, xm = _pad_by_identity(x, labels_x, ids)
    yp, ym = _pad_by_identity(y, labels_y, ids)
    return _batched_mmd2(xp, xm, yp, ym, num_kernels, kernel_mul), ids


def inter_modality_loss(feat_v_views: list[torch.Tensor], labels_v: torch.Tensor, feat_r: torch.Tensor,
                        labels_r: torch.Tensor, form: str = "paper", num_kernels: int = 5,
                        kernel_mul: float = 2.0) -> torch.Tensor:
    """Stop-gradient MMD between the modalities of each identity in the batch (L_inter).

    feat_v_views: the visible views, each (B_v, D) with labels_v (B_v,); feat_r (B_r, D), labels_r.
    With D_v(c) = D(F_V^v(c), sg F_R(c)) + D(F_R(c), sg F_V^v(c)) over the P identities in both:
    "paper" = (1/P) Σ_c ½·mean_v D_v(c); "reference" = (1/P) Σ_c Σ_v D_v(c). Zero when no identity
    is in both modalities.
    """
    if form not in INTER_FORMS:
        raise ConfigError(f"inter-modality loss form={form!r}: expected one of {', '.join(INTER_FORMS)}")
    per_view = []
    for feat_v in feat_v_views:
        pull_v, _ = per_identity_mmd2(feat_v, labels_v, feat_r.detach(), labels_r, num_kernels, kernel_mul)
        pull_r, _ = per_identity_mmd2(feat_v.detach(), labels_v, feat_r, labels_r, num_kernels, kernel_mul)
        per_view.append(pull_v + pull_r)
    terms = torch.stack(per_view)  # (views, P)
    if terms.shape[1] == 0:
        return feat_r.new_zeros(())
    if form == "paper":
        return 0.5 * terms.mean(0).mean()
    return terms.sum(0).mean()
