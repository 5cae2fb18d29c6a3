"""The multi-trial evaluation of a dataset's protocols (docs/method.md §7) with any feature extractor."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from vireid.data.records import Sample
from vireid.evaluation.metrics import evaluate_ranking
from vireid.progress import progress as progress_bar

METRIC_KEYS = ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP")

Embed = Callable[[list[Sample]], "torch.Tensor | np.ndarray"]


def run_protocols(embed: Embed, dataset: Any, trials: int = 10, progress: bool = True,
                  max_rank: int = 20) -> dict[str, dict]:
    """Evaluate every protocol of `dataset` over `trials` gallery draws.

    `embed(samples)` returns (N, D) features, row i for samples[i] (L2-normalised; rows are
    normalised again here, which changes nothing for normalised ones). Every distinct image (by
    path) of all queries and galleries is embedded once, in one call. Distance: cosine, 1 - q·g.
    `dataset` provides `evaluation_splits(trials)` and `metric_protocol` (see the readers).
    Returns {protocol: {rank1, rank5, rank10, rank20 (those within `max_rank`), mAP, mINP (means
    over trials, fractions), `cmc` (the mean CMC curve to rank `max_rank`),
    "trials": [per-trial dicts of the same six keys]}}.
    """
    splits = dataset.evaluation_splits(trials)
    unique, rows = _distinct_images(splits)
    features = _as_features(embed(unique), len(unique))
    pids = torch.tensor([s.pid for s in unique], dtype=torch.long)
    camids = torch.tensor([s.camid for s in unique], dtype=torch.long)

    results: dict[str, dict] = {}
    total = sum(len(pairs) for pairs in splits.values())
    with progress_bar(total=total, desc="evaluating", enabled=progress) as bar:
        for name, pairs in splits.items():
            per_trial, curves = [], []
            for query, gallery in pairs:
                qi, gi = torch.from_numpy(rows[id(query)]), torch.from_numpy(rows[id(gallery)])
                dist = 1.0 - features[qi.to(features.device)] @ features[gi.to(features.device)].T
                result = evaluate_ranking(dist, pids[qi], pids[gi], camids[qi], camids[gi],
                                          protocol=dataset.metric_protocol, max_rank=max_rank)
                per_trial.append(result.as_dict())
                curves.append(result.cmc)
                bar.update(1)
            results[name] = {**mean_metrics(per_trial), "trials": per_trial,
                             "cmc": np.mean(curves, axis=0).tolist()}
    return results


def evaluation_images(dataset: Any, trials: int = 10) -> list[Sample]:
    """Every distinct test image `run_protocols(..., dataset, trials)` embeds, in the order it embeds
    them (one call, so decoding them ahead of time fills the very cache it reads)."""
    return _distinct_images(dataset.evaluation_splits(trials))[0]


def _distinct_images(splits: dict) -> tuple[list[Sample], dict[int, np.ndarray]]:
    """The distinct images (by path) of all query and gallery lists, and for each list (by id) its rows."""
    lists = {id(lst): lst for pairs in splits.values() for pair in pairs for lst in pair}
    row_of: dict[str, int] = {}
    unique: list[Sample] = []
    rows: dict[int, np.ndarray] = {}
    for key, samples in lists.items():  # each distinct list once; queries are shared by trials
        for s in samples:
            if s.path not in row_of:
                row_of[s.path] = len(unique)
                unique.append(s)
        rows[key] = np.fromiter((row_of[s.path] for s in samples), dtype=np.int64, count=len(samples))
    return unique, rows


def mean_metrics(per_trial: list[dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over the trials."""
    return {k: float(np.mean([t[k] for t in per_trial])) for k in METRIC_KEYS if all(k in t for t in per_trial)}


def _as_features(raw: Any, count: int) -> torch.Tensor:
    """(N, D) float32 L2-normalised tensor from what `embed` returned, checked against N."""
    feats = raw.detach() if isinstance(raw, torch.Tensor) else torch.as_tensor(np.asarray(raw))
    if feats.ndim != 2 or feats.shape[0] != count:
        raise ValueError(f"embed returned features of shape {tuple(feats.shape)}; expected ({count}, D), "
                         "one row per sample in the order given")
    return F.normalize(feats.float(), dim=1)
