"""DDP on CPU (gloo): features gathered from two ranks equal a single-process extraction; two- and
four-process torchrun runs of the smoke preset as shipped complete with one run folder written by rank 0
and every result said once; a run refused under torchrun is one line and exit status 2 on every process."""

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


def _torchrun() -> str:
    return shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")


needs_torchrun = pytest.mark.skipif(shutil.which("torchrun") is None and not Path(_torchrun()).exists(),
                                    reason="torchrun is not installed")


def _torchrun_train(processes: int, root: Path, out: Path, cache: Path) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node N -m vireid train` with the smoke preset as shipped (gloo on the CPU)."""
    env = dict(os.environ, VIREID_CACHE_DIR=str(cache), OMP_NUM_THREADS="1")
    return subprocess.run([_torchrun(), "--nproc_per_node", str(processes), "--master_port", str(_free_port()), "-m",
                           "vireid", "train", "--preset", "smoke", "--data-root", str(root), "--output", str(out),
                           "--seed", "1"], env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
@needs_torchrun
@pytest.mark.parametrize("processes", [2, 4])
def test_torchrun_runs_the_smoke_preset_as_shipped_and_says_everything_once(processes, tmp_path):
    # smoke: cmc.batch_size 16, sca 2 identities x 4 samples, split over the processes
    root = generate_synthetic(tmp_path / "data", ids=16, height=64, width=32, seed=3, progress=False)
    out = tmp_path / "run"
    done = _torchrun_train(processes, root, out, tmp_path / "cache")
    assert done.returncode == 0, done.stderr[-4000:]
    final = json.loads((out / "final_metrics.json").read_text())
    assert set(final) == {"all-single", "all-multi", "indoor-single", "indoor-multi"}
    log = (out / "log.txt").read_text()
    assert log.count("vireid run in") == 1  # only rank 0 writes the run folder
    # results on stdout once, from rank 0: one table, one "wrote" line
    assert done.stdout.count("Protocol") == 1 and done.stdout.count("all-single") == 1
    assert done.stdout.count("wrote ") == 1 and f"wrote {out / 'final_metrics.json'}" in done.stdout
    # logs and warnings once: every epoch line once, no third-party warnings
    assert done.stderr.count("sca epoch 2/2") == 1 and done.stderr.count("done: ") == 1
    assert "Warning" not in done.stderr and "warn(" not in done.stderr, done.stderr[-4000:]


@pytest.mark.slow
@needs_torchrun
def test_under_torchrun_a_refused_run_says_so_once_and_stops_every_process(tmp_path):
    from vireid.engine.runlock import hold_run_folder

    root = generate_synthetic(tmp_path / "data", ids=6, images_per_camera=2, height=64, width=32, progress=False)
    out = tmp_path / "run"
    with hold_run_folder(out, command="vireid train"):  # another run holds the folder: rank 0 finds out
        done = _torchrun_train(2, root, out, tmp_path / "cache")
    assert done.returncode != 0 and done.stdout == ""
    lines = [line for line in done.stderr.splitlines() if line.startswith("vireid train")]
    assert lines == [f"vireid train: error: run folder {out} is in use by vireid train (process {os.getpid()} on "
                     f"{socket.gethostname()}); wait for it to finish, or choose another --output"], done.stderr
    assert "exitcode  : 2" in done.stderr  # torchrun's summary: the processes' own exit status
    assert "vireid/cli.py" not in done.stderr and "vireid/engine" not in done.stderr  # no traceback of ours
    assert not (out / "config.yaml").exists()
