"""The demo's pictures: infrared queries with their ranked visible matches, and a t-SNE of the two
modalities' test features (islands per modality mean the modalities are not aligned)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vireid.data.records import INFRARED
from vireid.viz import plot_ranked_lists, plot_tsne


def ranked_list_picture(dataset, samples: list, features: torch.Tensor, path: Path, queries: int = 6,
                        topk: int = 10, seed: int = 0) -> Path:
    """Infrared queries (one per random test identity) and their top-k visible gallery images of the
    all-search multi-shot gallery (trial 0), SYSU exclusion applied; correct matches framed green."""
    row = {s.path: i for i, s in enumerate(samples)}
    query = [s for s in dataset.query("all")]
    gallery = dataset.gallery("all", trial=0, shots=10)
    rng = np.random.default_rng(seed)
    pids = rng.choice(sorted({s.pid for s in query}), size=min(queries, len({s.pid for s in query})), replace=False)
    chosen = [rng.choice([s for s in query if s.pid == p]) for p in pids]
    q = features[[row[s.path] for s in chosen]]
    g = features[[row[s.path] for s in gallery]]
    dist = 1.0 - q @ g.T  # (Q, G)
    g_cam = torch.tensor([s.camid for s in gallery])
    q_cam = torch.tensor([s.camid for s in chosen])
    dist[(q_cam[:, None] == 3) & (g_cam[None, :] == 2)] = float("inf")  # SYSU: cam3 queries skip cam2
    order = dist.argsort(dim=1)[:, :topk].numpy()
    g_pid = np.array([s.pid for s in gallery])
    correct = g_pid[order] == np.array([s.pid for s in chosen])[:, None]
    return plot_ranked_lists([s.path for s in chosen], [s.path for s in gallery], order, correct, path)


def tsne_picture(samples: list, features: torch.Tensor, path: Path, title: str, max_points: int = 800) -> Path:
    """t-SNE of test features, visible vs infrared (islands per modality = not aligned)."""
    infrared = np.array([s.modality == INFRARED for s in samples])
    return plot_tsne(features, infrared, path, title=title, max_points=max_points)
