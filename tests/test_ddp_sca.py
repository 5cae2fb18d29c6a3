"""Multi-GPU correctness of SCA, checked with gloo processes on the CPU: optimiser groups built through
a DDP wrapper, one batch split over two ranks giving the single-process triplet/MMD and gradients, and
the confidence pass sharded over ranks giving the single-process confidences."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from model_helpers import model_for_tests
from vireid.config import SCAConfig, load_config
from vireid.engine.confidence import Confidence
from vireid.engine.sca import sca_losses, sca_optimizer
from vireid.models.agw import ModelOutput

IDS, K, DIM, CLASSES = 4, 3, 8, 6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _join(rank: int, world: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)


class TinyHead(nn.Module):
    """Inputs (B, 5) -> pre-BN features (B, DIM) and logits (B, CLASSES), like the model's output."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Linear(5, DIM)
        self.classifier = nn.Linear(DIM, CLASSES, bias=False)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        f = torch.relu(self.features(x)) + 0.1
        return ModelOutput(f, f, self.classifier(f))


def _batch(ids: int = IDS, k: int = K):
    """One SCA batch laid out [visible view 1, view 2, infrared], `ids` identities x `k` each, identity-major."""
    gen = torch.Generator().manual_seed(1)
    y = torch.arange(ids).repeat_interleave(k)
    x = torch.randn(3, ids * k, 5, generator=gen) + y[None, :, None].float()
    w = torch.rand(3, ids * k, generator=gen)
    protos = [torch.rand(CLASSES, DIM, generator=gen) for _ in range(3)]
    return x, y, w, protos


def _sca_config() -> SCAConfig:
    return load_config(overrides=["profile=reference", "sca.intra_start=0", "sca.inter_start=0"]).sca


def _terms(model: nn.Module, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, protos) -> dict:
    """SCA terms of the batch parts (x: (3, B, 5), y: (B,), w: (3, B)) given to this process."""
    out = model(torch.cat([x[0], x[1], x[2]]))
    conf = Confidence(torch.zeros(1), torch.zeros(1), torch.zeros(1), *protos, summary={})
    return sca_losses(out, y, y, torch.cat([w[0], w[1], w[2]]), conf, _sca_config(), epoch=5)


def _split_worker(rank: int, world: int, port: int, out_dir: str, ids: int, k: int) -> None:
    from vireid.data.samplers import rank_share
    from vireid.engine.sca import rank_objective

    _join(rank, world, port)
    model = nn.parallel.DistributedDataParallel(TinyHead())
    x, y, w, protos = _batch(ids, k)
    share = rank_share(ids * k, rank, world)  # this rank's samples, as the identity sampler splits them
    terms = _terms(model, x[:, share], y[share], w[:, share], protos)
    rank_objective(terms, share.stop - share.start, ids * k).backward()
    torch.save({"terms": {k: v.detach() for k, v in terms.items()}, "rows": share.stop - share.start,
                "grads": [p.grad.clone() for p in model.parameters()]}, Path(out_dir) / f"rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.parametrize("world,ids,k", [(2, IDS, K), (3, 4, 2)], ids=["two-equal-shares", "three-unequal-shares"])
def test_a_batch_split_over_ranks_gives_the_single_process_triplet_mmd_and_gradients(world, ids, k, tmp_path):
    # 12 samples over 2 ranks: 6 + 6; 8 samples over 3 ranks: 2 + 3 + 3, identities cut across ranks
    mp.spawn(_split_worker, args=(world, _free_port(), str(tmp_path), ids, k), nprocs=world, join=True)
    model = TinyHead()
    x, y, w, protos = _batch(ids, k)
    terms = _terms(model, x, y, w, protos)
    sum(terms.values()).backward()
    rows = [torch.load(tmp_path / f"rank{rank}.pt")["rows"] for rank in range(world)]
    assert sum(rows) == ids * k and (world == 2 or len(set(rows)) == 2)
    for rank in range(world):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        for name in ("triplet", "inter"):  # computed on the gathered global batch by every rank
            torch.testing.assert_close(got["terms"][name], terms[name], rtol=1e-5, atol=1e-6)
        for mine, single in zip(got["grads"], model.parameters()):  # DDP-averaged = single-process
            torch.testing.assert_close(mine, single.grad, rtol=1e-4, atol=1e-6)


def _groups_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    _join(rank, world, port)
    model = nn.parallel.DistributedDataParallel(model_for_tests("resnet18", num_classes=7))
    optimizer, _ = sca_optimizer(model, load_config().sca)
    torch.save([len(g["params"]) for g in optimizer.param_groups], Path(out_dir) / "groups.pt")
    dist.destroy_process_group()


def test_sca_parameter_groups_are_the_same_under_a_ddp_wrapper(tmp_path):
    mp.spawn(_groups_worker, args=(1, _free_port(), str(tmp_path)), nprocs=1, join=True)
    bare, _ = sca_optimizer(model_for_tests("resnet18", num_classes=7), load_config().sca)
    expected = [len(g["params"]) for g in bare.param_groups]
    assert torch.load(tmp_path / "groups.pt") == expected
    assert expected[1] == 2  # BN neck weight (its bias is frozen) and the classifier: the head trains at lr


def _confidence_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    from vireid.engine import confidence

    _join(rank, world, port)
    seen = []
    original = confidence.losses_and_features

    def counting(model, load, rows, *args):
        seen.append(len(rows))
        return original(model, load, rows, *args)

    confidence.losses_and_features = counting
    torch.save({**_confidence(), "rows": sum(seen)}, Path(out_dir) / f"conf{rank}.pt")
    dist.destroy_process_group()


def _confidence():
    """Confidences and prototypes of the paper's clean pass on a fixed tiny training set."""
    from vireid.engine.confidence import compute_confidence
    from vireid.engine.context import RunContext
    from vireid.engine.mmlm import SharedLabels
    from vireid.engine.trainset import ModalitySet, TrainSet

    rng = np.random.default_rng(0)
    images_v = rng.integers(0, 256, size=(14, 32, 16, 3), dtype=np.uint8)
    images_r = rng.integers(0, 256, size=(9, 32, 16, 3), dtype=np.uint8)
    labels_v = np.array([0, 0, 1, 1, 2, 2, -1, 0, 1, 2, 2, 1, 0, 0])
    labels_r = np.array([0, 1, 2, 0, 1, 2, -1, 2, 0])
    ids_v, ids_r = np.arange(14), np.arange(9)
    train = TrainSet(ModalitySet(list(ids_v), images_v, ids_v, ids_v), ModalitySet(list(ids_r), images_r, ids_r, ids_r))
    torch.manual_seed(0)
    model = model_for_tests("resnet18", num_classes=3).eval()
    ctx = RunContext(device=torch.device("cpu"), run=None, amp=False, image_size=(32, 16), eval_batch_size=4)
    sca = load_config().sca  # paper: eval-mode BN, unaugmented
    torch.manual_seed(1)  # the channel exchange of view 2 draws from the global generator
    conf = compute_confidence(model, train, SharedLabels(labels_v, labels_r, 3), sca, ctx, epoch=5)
    return {"w_v1": conf.w_v1, "w_r": conf.w_r, "proto_v1": conf.proto_v1, "proto_r": conf.proto_r}


def test_the_confidence_pass_sharded_over_ranks_equals_one_process(tmp_path):
    mp.spawn(_confidence_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    single = _confidence()
    rows = [torch.load(tmp_path / f"conf{rank}.pt")["rows"] for rank in range(2)]
    assert sum(rows) == 2 * 13 + 8 and max(rows) < sum(rows)  # labelled rows (v1 + v2 + r), each once
    for rank in range(2):
        got = torch.load(tmp_path / f"conf{rank}.pt")
        for key in ("w_v1", "w_r", "proto_v1", "proto_r"):  # view 1 and infrared are deterministic
            torch.testing.assert_close(got[key], single[key], rtol=1e-4, atol=1e-5)


PRESETS = ("sysu", "regdb", "llcm", "demo", "smoke", "bench")


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_trains_on_1_2_4_and_8_processes_with_the_global_batch_it_sets(preset):
    from vireid.data.samplers import ClusterSampler, IdentitySampler, warmup_batches
    from vireid.engine.preflight import check_batches_cover_ranks

    cfg = load_config(preset)
    labels = np.repeat(np.arange(40), 6)  # 40 clusters/identities of 6 samples in each modality
    cams = np.tile(np.arange(6), 40)
    for world in (1, 2, 4, 8):
        check_batches_cover_ranks(cfg, world)
        cmc = [list(ClusterSampler(labels, cams, batch_size=cfg.cmc.batch_size, num_instances=cfg.cmc.num_instances,
                                   iterations=2, seed=0, rank=r, world_size=world)) for r in range(world)]
        sca = [list(IdentitySampler(labels, labels, num_ids=cfg.sca.num_ids, num_instances=cfg.sca.num_instances,
                                    iterations=2, seed=0, rank=r, world_size=world)) for r in range(world)]
        per = cfg.sca.num_ids * cfg.sca.num_instances
        warm = [list(warmup_batches(labels, labels, per, np.random.default_rng(0), r, world)) for r in range(world)]
        single_cmc = list(ClusterSampler(labels, cams, batch_size=cfg.cmc.batch_size,
                                         num_instances=cfg.cmc.num_instances, iterations=2, seed=0))
        single_sca = list(IdentitySampler(labels, labels, num_ids=cfg.sca.num_ids,
                                          num_instances=cfg.sca.num_instances, iterations=2, seed=0))
        for b in range(2):  # the ranks' shares are non-empty and together exactly the single-process batch
            assert all(len(shares[b]) > 0 for shares in cmc)
            assert sum((shares[b] for shares in cmc), []) == single_cmc[b]
            for m in range(2):
                assert all(len(shares[b][m]) > 0 for shares in sca + warm)
                np.testing.assert_array_equal(np.concatenate([shares[b][m] for shares in sca]), single_sca[b][m])
            assert sum(len(shares[b][0]) for shares in warm) == per


def test_a_batch_smaller_than_the_number_of_processes_is_refused_before_the_run():
    from vireid.engine.preflight import check_batches_cover_ranks
    from vireid.errors import ConfigError

    cfg = load_config("smoke")  # cmc.batch_size 16, sca 2 identities x 4
    check_batches_cover_ranks(cfg, 8)
    with pytest.raises(ConfigError, match="sca.num_ids × sca.num_instances = 8 samples per batch cannot feed the 9"):
        check_batches_cover_ranks(cfg, 9)
