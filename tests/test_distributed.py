"""DDP on CPU (gloo): features gathered from two ranks equal a single-process extraction, and a
two-process torchrun of the smoke pipeline completes with one run folder written by rank 0."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from vireid.config import load_config
from vireid.data.synthetic import generate_synthetic


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gather_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    from vireid.engine.context import RunContext
    from vireid.engine.features import clustering_features
    from vireid.engine.trainset import ModalitySet, TrainSet
    from model_helpers import model_for_tests

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = model_for_tests("resnet18", pretrained="none").eval()
    images = np.random.default_rng(0).integers(0, 255, size=(11, 64, 32, 3), dtype=np.uint8)
    cfg = load_config("smoke")
    ids = np.arange(11)
    train = TrainSet(ModalitySet(list(ids), images, ids, ids), ModalitySet(list(ids[:5]), images[:5], ids[:5], ids[:5]))
    ctx = RunContext.from_config(cfg, None, torch.device("cpu"))
    feats_v, feats_r = clustering_features(model, train, cfg.cluster, ctx)
    torch.save((feats_v, feats_r), Path(out_dir) / f"rank{rank}.pt")
    dist.destroy_process_group()


def test_gathered_features_equal_single_process_extraction(tmp_path):
    from vireid.engine.extract import extract_features
    from model_helpers import model_for_tests

    mp.spawn(_gather_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    torch.manual_seed(0)
    model = model_for_tests("resnet18", pretrained="none").eval()
    images = np.random.default_rng(0).integers(0, 255, size=(11, 64, 32, 3), dtype=np.uint8)
    cfg = load_config("smoke")
    single_v = extract_features(model, images, np.zeros(11, bool), batch_size=cfg.data.eval_batch_size,
                                flip_average=True, renormalize=True, progress=False)
    single_r = extract_features(model, images[:5], np.ones(5, bool), batch_size=cfg.data.eval_batch_size,
                                flip_average=True, renormalize=True, progress=False)
    for rank in range(2):
        gathered_v, gathered_r = torch.load(tmp_path / f"rank{rank}.pt")
        assert gathered_v.shape == single_v.shape and gathered_r.shape == single_r.shape
        torch.testing.assert_close(gathered_v, single_v, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(gathered_r, single_r, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
                    reason="torchrun is not installed")
def test_torchrun_two_processes_runs_the_smoke_pipeline(tmp_path):
    root = generate_synthetic(tmp_path / "data", ids=16, height=64, width=32, seed=3, progress=False)
    out = tmp_path / "run"
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    env = dict(os.environ, VIREID_CACHE_DIR=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    done = subprocess.run([torchrun, "--nproc_per_node", "2", "--master_port", str(_free_port()), "-m", "vireid",
                           "train", "--preset", "smoke", "--data-root", str(root), "--output", str(out),
                           "--seed", "1"], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    final = json.loads((out / "final_metrics.json").read_text())
    assert set(final) == {"all-single", "all-multi", "indoor-single", "indoor-multi"}
    log = (out / "log.txt").read_text()
    assert log.count("vireid run in") == 1  # only rank 0 writes the run folder
