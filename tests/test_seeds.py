"""Random streams: one seed per (stage, epoch, stream[, rank]), reproducible and distinct; augmentation
differs across DDP ranks while samplers do not."""

from __future__ import annotations

import numpy as np
import torch

from vireid.config import load_config
from vireid.engine import context
from vireid.engine.context import RunContext
from vireid.engine.seeds import derive_seed
from vireid.engine.trainset import ModalitySet, TrainSet, training_loader


def test_a_stream_seed_is_reproducible_and_each_key_changes_it():
    base = derive_seed(3, "cmc", 4, "augment")
    assert base == derive_seed(3, "cmc", 4, "augment")
    others = [derive_seed(4, "cmc", 4, "augment"), derive_seed(3, "sca", 4, "augment"),
              derive_seed(3, "cmc", 5, "augment"), derive_seed(3, "cmc", 4, "clusters-visible"),
              derive_seed(3, "cmc", 4, "augment", 1)]
    assert base not in others and len(set(others)) == len(others)
    assert all(0 <= s < 2**31 for s in others + [base])


def _context(monkeypatch, rank: int, world: int = 2) -> RunContext:
    monkeypatch.setattr(context, "world", lambda: (rank, world))
    cfg = load_config("smoke", ["data.height=16", "data.width=8"])
    return RunContext.from_config(cfg, None, torch.device("cpu"))


def test_augmentation_seeds_differ_across_ranks_and_repeat_on_each(monkeypatch):
    images = np.random.default_rng(0).integers(0, 256, size=(6, 16, 8, 3), dtype=np.uint8)
    ids = np.arange(6)
    train = TrainSet(ModalitySet(list(ids), images, ids, ids), ModalitySet(list(ids), images, ids, ids))
    steps = [(np.array([0, 1, 2]), np.array([3, 4]))]

    def views(rank: int) -> list[torch.Tensor]:
        ctx = _context(monkeypatch, rank)
        seed = ctx.seed_for("cmc", 0, "augment", per_rank=True)
        return list(training_loader(steps, train, ctx, seed=seed))[0]

    rank0, rank0_again, rank1 = views(0), views(0), views(1)
    assert all(torch.equal(a, b) for a, b in zip(rank0, rank0_again))
    assert not all(torch.equal(a, b) for a, b in zip(rank0, rank1))
    # samplers are seeded without the rank: every rank draws the same global batch
    assert _context(monkeypatch, 0).seed_for("cmc", 0, "clusters-visible") == \
        _context(monkeypatch, 1).seed_for("cmc", 0, "clusters-visible")
