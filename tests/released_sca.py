"""An independent transcription of the SCA formulas of the released MMM code (github.com/shijiangming1/MMM).

Written from the released `main.py` and `loss.py` (HEAD 7e57d50), one sample or one identity at a time,
with none of vireid's code, so that tests can hold vireid's `profile: reference` against it. Line numbers
in the docstrings point into those two files. The released defaults are the keyword defaults here:
`--sm_w 0.5`, `--md_w 0.05`, `--margin 0.2` (main.py:62, 87-89).

Batch layout, as in main.py:387-408: the features (B, D) are [visible view 1 (n), visible view 2 (n),
infrared (n)] with labels [y_v, y_v, y_r]; the released sampler gives n visible and n infrared rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def weighted_ce(logits: torch.Tensor, labels: torch.Tensor, prob: torch.Tensor) -> torch.Tensor:
    """main.py:409-412: per-sample CE times the sample's GMM probability, summed, over the batch size."""
    total = logits.new_zeros(())
    for i in range(logits.shape[0]):
        total = total + prob[i] * F.cross_entropy(logits[i:i + 1], labels[i:i + 1])
    return total / prob.shape[0]


def triplet(feat: torch.Tensor, labels: torch.Tensor, margin: float = 0.2) -> torch.Tensor:
    """OriTripletLoss (loss.py:9-54) on the whole batch (main.py:457).

    Euclidean distances from |a|² + |b|² − 2a·b clamped at 1e-12 before the root; for each anchor the
    largest distance among its own label (itself included) and the smallest among the others;
    MarginRankingLoss(d_an, d_ap, 1) = mean of max(0, d_ap − d_an + margin).
    """
    n = feat.shape[0]
    norms = (feat * feat).sum(1)
    dist = (norms[:, None] + norms[None, :] - 2.0 * feat @ feat.T).clamp(min=1e-12).sqrt()
    total = feat.new_zeros(())
    for a in range(n):
        same = labels == labels[a]
        hardest_positive = dist[a][same].max()
        hardest_negative = dist[a][~same].min()
        total = total + torch.clamp(hardest_positive - hardest_negative + margin, min=0.0)
    return total / n


def mmd(source: torch.Tensor, target: torch.Tensor, kernel_mul: float = 2.0, kernel_num: int = 5) -> torch.Tensor:
    """MMD_loss (loss.py:56-93) for sets of equal size, as the released sampler gives them.

    Gaussian kernels on squared distances over the joined set; the base bandwidth is their mean over
    the off-diagonal pairs (no gradient through it, `.data`), divided by mul^(num // 2), and the
    kernels use base·mul^q, q = 0..num−1. Loss = mean of the elementwise XX + YY − XY − YX.
    """
    joined = torch.cat([source, target], 0)
    count = joined.shape[0]
    sq = torch.stack([((joined[i] - joined) ** 2).sum(1) for i in range(count)])  # (count, count)
    base = sq.detach().sum() / (count * count - count) / kernel_mul ** (kernel_num // 2)
    kernel = sum(torch.exp(-sq / (base * kernel_mul ** q)) for q in range(kernel_num))
    n = source.shape[0]
    xx, yy = kernel[:n, :n], kernel[n:, n:]
    xy, yx = kernel[:n, n:], kernel[n:, :n]
    return torch.mean(xx + yy - xy - yx)


def intra(feat: torch.Tensor, y_v: torch.Tensor, y_r: torch.Tensor, prob: torch.Tensor,
          proto_v1: torch.Tensor, proto_v2: torch.Tensor, proto_r: torch.Tensor,
          sm_w: float = 0.5) -> torch.Tensor:
    """The self-mimic loss, main.py:418-427.

    For i < n (the visible count): visible += ½·(L1(f1_i, P1[y_i])·p1_i + L1(f2_i, P2[y_i])·p2_i) and
    infrared += L1(fr_i, PR[yr_i])·pr_i, with L1 the mean absolute error over D (nn.L1Loss) and the
    prototypes detached; both sums times sm_w and divided by n, the *visible* batch size
    (feat_rgb1.shape[0]), then added.
    """
    n = y_v.shape[0]
    f1, f2, fr = feat[:n], feat[n:2 * n], feat[2 * n:]
    p1, p2, pr = prob[:n], prob[n:2 * n], prob[2 * n:]
    l1 = lambda a, b: (a - b.detach()).abs().mean()  # noqa: E731  (nn.L1Loss, reduction mean)
    visible = feat.new_zeros(())
    infrared = feat.new_zeros(())
    for i in range(n):
        visible = visible + (l1(f1[i], proto_v1[y_v[i]]) * p1[i] + l1(f2[i], proto_v2[y_v[i]]) * p2[i]) / 2.0
        infrared = infrared + l1(fr[i], proto_r[y_r[i]]) * pr[i]
    return visible * sm_w / n + infrared * sm_w / n


def inter(feat: torch.Tensor, y_v: torch.Tensor, y_r: torch.Tensor, md_w: float = 0.05) -> torch.Tensor:
    """The mutual-distillation loss, main.py:440-455.

    For each identity c of the visible labels: MMD(f1_c, sg fr_c) + MMD(f2_c, sg fr_c) pull the visible
    views, MMD(fr_c, sg f1_c) + MMD(fr_c, sg f2_c) the infrared; each pair of sums is divided by the
    number of identities and times md_w, and the two are added.
    """
    n = y_v.shape[0]
    f1, f2, fr = feat[:n], feat[n:2 * n], feat[2 * n:]
    ids = torch.unique(y_v)
    rgb = feat.new_zeros(())
    ir = feat.new_zeros(())
    for c in ids:
        v, r = y_v == c, y_r == c
        rgb = rgb + mmd(f1[v], fr[r].detach()) + mmd(f2[v], fr[r].detach())
        ir = ir + mmd(fr[r], f1[v].detach()) + mmd(fr[r], f2[v].detach())
    return ir / len(ids) * md_w + rgb / len(ids) * md_w


def prototypes(feat_views: list[torch.Tensor], labels: torch.Tensor, prob_views: list[torch.Tensor],
               previous: list[torch.Tensor]) -> list[torch.Tensor]:
    """The end-of-epoch prototype update, main.py:491-532, for one modality's views.

    Each view's prototype of class c is Σ p_i·f_i over the drawn samples of c divided by the *number*
    of those draws; a class drawn nowhere keeps its previous prototype.
    """
    out = []
    for feat, prob, old in zip(feat_views, prob_views, previous):
        total = torch.zeros_like(old)
        count = torch.zeros(old.shape[0], dtype=old.dtype)
        for i in range(feat.shape[0]):
            total[labels[i]] += feat[i] * prob[i]
            count[labels[i]] += 1
        new = old.clone()
        for c in range(old.shape[0]):
            if count[c] > 0:
                new[c] = total[c] / count[c]
        out.append(new)
    return out


def mixed_memory(feat_v: torch.Tensor, labels_v, feat_r: torch.Tensor, labels_r, num_clusters: int) -> torch.Tensor:
    """CMC phase-2 memory entries, Baseline.py:922-956 then F.normalize (Baseline.py:969).

    Per cluster: the raw mean of its visible features and the raw mean of its infrared features;
    their plain average when both exist, else the one present; the averages are then L2-normalised.
    """
    rows = []
    for c in range(num_clusters):
        members_v = [feat_v[i] for i in range(len(labels_v)) if labels_v[i] == c]
        members_r = [feat_r[i] for i in range(len(labels_r)) if labels_r[i] == c]
        means = [torch.stack(m).mean(0) for m in (members_v, members_r) if m]
        rows.append(torch.stack(means).mean(0))
    return F.normalize(torch.stack(rows), dim=1)


def confidence(loss_v1, loss_v2, loss_r, random_state: int = 0):
    """Label confidence, main.py:348-367: each list of per-sample CE min-max normalised on its own, the
    two visible views' lists joined for one 2-component GMM (max_iter 100, tol 1e-2, reg_covar 5e-4),
    the infrared list for another; the posterior of the component with the smaller mean.

    The released GMMs draw from numpy's global state (seeded once); a fixed `random_state` stands in.
    Returns (visible (2n,) = [view 1, view 2], infrared (m,)).
    """
    import numpy as np
    from sklearn.mixture import GaussianMixture

    def scaled(x):
        x = np.asarray(x, dtype=np.float64)
        return (x - x.min()) / (x.max() - x.min())

    def clean_posterior(x):
        gmm = GaussianMixture(n_components=2, max_iter=100, tol=1e-2, reg_covar=5e-4, random_state=random_state)
        gmm.fit(x.reshape(-1, 1))
        return gmm.predict_proba(x.reshape(-1, 1))[:, gmm.means_.argmin()]

    visible = np.concatenate([scaled(loss_v1), scaled(loss_v2)])
    return clean_posterior(visible), clean_posterior(scaled(loss_r))
