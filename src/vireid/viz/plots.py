"""Pictures for people: CMC curves, ranked lists, t-SNE of the two modalities (training curves: curves.py).

Figures are built with `matplotlib.figure.Figure` (Agg canvas), never pyplot, so plotting works on
headless servers and leaves no global state behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from vireid.data.image_cache import as_rgb8


def _save(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def plot_cmc(results: Mapping[str, Sequence[float]], path: str | Path, title: str = "CMC") -> Path:
    """One CMC curve per entry (name -> matching rate at ranks 1..R, fractions or percent)."""
    fig = Figure(figsize=(5, 4))
    ax = fig.add_subplot()
    for name, cmc in results.items():
        cmc = np.asarray(cmc, dtype=float)
        cmc = cmc * 100 if cmc.max(initial=0) <= 1.0 else cmc
        ranks = np.arange(1, len(cmc) + 1)
        ax.plot(ranks, cmc, marker="o", markersize=3, label=f"{name} (R1 {cmc[0]:.1f})" if len(cmc) else name)
    ax.set_xlabel("rank")
    ax.set_ylabel("matching rate (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if results:
        ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def _thumbnail(image: Any) -> np.ndarray:
    """A path or an image array -> (H, W, 3) uint8 array for imshow."""
    from PIL import Image

    if isinstance(image, (str, Path)):
        with Image.open(image) as img:
            return np.asarray(as_rgb8(img))
    array = np.asarray(image)
    return np.repeat(array[:, :, None], 3, axis=2) if array.ndim == 2 else array


def _framed(ax: Any, image: np.ndarray, colour: str | None, label: str) -> None:
    ax.imshow(image)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if colour is not None:
        h, w = image.shape[:2]
        ax.add_patch(Rectangle((0, 0), w - 1, h - 1, fill=False, edgecolor=colour, linewidth=4))
    ax.set_title(label, fontsize=7)


def plot_ranked_lists(
    query_paths: Sequence[Any],
    gallery_paths: Sequence[Any],
    ranked_indices: np.ndarray,
    correct: np.ndarray,
    path: str | Path,
) -> Path:
    """Each query followed by its top-k gallery images; correct matches framed green, wrong red.

    `ranked_indices` (Q, k) index `gallery_paths`; `correct` (Q, k) bool. Paths or image arrays.
    """
    ranked_indices = np.asarray(ranked_indices)
    correct = np.asarray(correct, dtype=bool)
    n_queries, k = ranked_indices.shape
    fig = Figure(figsize=(1.1 * (k + 1), 2.3 * max(n_queries, 1)))
    for q in range(n_queries):
        _framed(fig.add_subplot(n_queries, k + 1, q * (k + 1) + 1), _thumbnail(query_paths[q]), None, "query")
        for r in range(k):
            ax = fig.add_subplot(n_queries, k + 1, q * (k + 1) + r + 2)
            colour = "#2ca02c" if correct[q, r] else "#d62728"
            _framed(ax, _thumbnail(gallery_paths[int(ranked_indices[q, r])]), colour, str(r + 1))
    return _save(fig, path)


def plot_tsne(
    features: Any,
    infrared_mask: Any,
    path: str | Path,
    title: str = "t-SNE",
    max_points: int = 2000,
    seed: int = 0,
) -> Path:
    """2-D t-SNE of a random subsample of features, visible and infrared in two colours.

    Shows whether the modalities are mixed (aligned) or form separate islands.
    """
    from sklearn.manifold import TSNE

    feats = features.detach().cpu().numpy() if hasattr(features, "detach") else np.asarray(features)
    mask = np.asarray(infrared_mask, dtype=bool)
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(feats), size=min(max_points, len(feats)), replace=False))
    feats, mask = feats[keep].astype(np.float32), mask[keep]
    perplexity = float(min(30.0, max(1.0, (len(feats) - 1) / 3)))
    points = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(feats)
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    for flag, name, colour in ((False, "visible", "#1f77b4"), (True, "infrared", "#d62728")):
        sel = mask == flag
        ax.scatter(points[sel, 0], points[sel, 1], s=6, c=colour, alpha=0.7, label=f"{name} ({sel.sum()})")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=8, markerscale=2)
    return _save(fig, path)


def plot_search_results(query_paths: Sequence[Path], gallery_paths: Sequence[Path], indices: np.ndarray,
                        scores: np.ndarray, correct: np.ndarray | None, path: str | Path) -> Path:
    """Each query then its top-k gallery images titled 'rank: cosine'; framed green/red only with `correct`.

    `indices`, `scores` (Q, k); `correct` (Q, k) bool or None (no identities, no judgement).
    """
    n_queries, k = indices.shape
    fig = Figure(figsize=(1.1 * (k + 1), 2.3 * max(n_queries, 1)))
    for q in range(n_queries):
        _framed(fig.add_subplot(n_queries, k + 1, q * (k + 1) + 1), _thumbnail(query_paths[q]), None, "query")
        for r in range(k):
            colour = None if correct is None else ("#2ca02c" if correct[q, r] else "#d62728")
            _framed(fig.add_subplot(n_queries, k + 1, q * (k + 1) + r + 2),
                    _thumbnail(gallery_paths[int(indices[q, r])]), colour, f"{r + 1}: {scores[q, r]:.2f}")
    return _save(fig, path)
