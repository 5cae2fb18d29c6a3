"""Every dataset preset's SCA loss settings, in both profiles, train without diverging from a cold start
at smoke scale (random weights, two identities per batch): the losses stay finite."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from model_helpers import model_for_tests
from vireid.config import load_config
from vireid.data.registry import open_dataset
from vireid.data.synthetic import generate_synthetic
from vireid.engine.context import RunContext
from vireid.engine.hooks import EpochEnd, Hook
from vireid.engine.mmlm import SharedLabels
from vireid.engine.sca import prepare_sca_model, sca_stage
from vireid.engine.trainset import build_train_set

# no warm-up: the first confidence pass sees a random network (the harshest start for the prototypes)
SMOKE_SIZES = dict(epochs=2, warmup_epochs=0, intra_start=0, inter_start=0, num_ids=2, num_instances=4,
                   iterations=3, lr_warmup_epochs=1, lr_milestones=[2, 3])


@pytest.fixture(scope="module")
def train_set(tmp_path_factory):
    base = tmp_path_factory.mktemp("stability")
    root = generate_synthetic(base / "data", ids=8, height=64, width=32, seed=5, progress=False)
    return build_train_set(open_dataset("sysu", root), 64, 32, base / "cache")


def _identity_labels(pids: np.ndarray) -> np.ndarray:
    return np.unique(pids, return_inverse=True)[1].astype(np.int64)


class Records(Hook):
    def __init__(self) -> None:
        self.records: list[dict] = []

    def after_epoch(self, end: EpochEnd) -> None:
        self.records.append(end.record)


def _distinct_sca_sections(profile: str) -> list:
    sections = []
    for preset in ("sysu", "regdb", "llcm"):
        sca = dataclasses.replace(load_config(preset, [f"profile={profile}"]).sca, **SMOKE_SIZES)
        if sca not in sections:
            sections.append(sca)
    return sections


@pytest.mark.parametrize("profile", ["paper", "reference"])
def test_dataset_presets_sca_losses_stay_finite_from_a_cold_start(train_set, profile):
    labels_v, labels_r = _identity_labels(train_set.visible.pids), _identity_labels(train_set.infrared.pids)
    shared = SharedLabels(labels_v, labels_r, int(max(labels_v.max(), labels_r.max()) + 1))
    for sca in _distinct_sca_sections(profile):
        torch.manual_seed(0)
        ctx = RunContext(device=torch.device("cpu"), run=None, seed=0, amp=False, image_size=(64, 32),
                         eval_batch_size=64)
        records = Records()
        ctx.hooks = [records]
        model = prepare_sca_model(model_for_tests("resnet18"), shared, ctx.device)
        sca_stage(model, train_set, shared, sca, ctx)
        last = records.records[-1]
        assert {"loss_wce", "loss_triplet", "loss_intra", "loss_inter"} <= set(last), last
        assert all(math.isfinite(v) for r in records.records for k, v in r.items() if k.startswith("loss")), records.records
        # bounded: the terms stay within a few orders of the classification loss, none dominates by 1e4
        assert last["loss_intra"] < 1e4 * max(last["loss_wce"], 1.0)
