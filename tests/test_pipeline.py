"""End to end: the smoke preset trains CMC -> MMLM -> SCA on synthetic SYSU-layout data, writes a
self-describing run folder, and a run killed with SIGKILL resumes to the same final metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vireid.data.synthetic import generate_synthetic

pytestmark = pytest.mark.slow

PROTOCOLS = ("all-single", "all-multi", "indoor-single", "indoor-multi")
METRICS = ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    base = tmp_path_factory.mktemp("pipeline")
    root = generate_synthetic(base / "data", ids=16, height=64, width=32, seed=3, progress=False)
    env = dict(os.environ, VIREID_CACHE_DIR=str(base / "cache"), OMP_NUM_THREADS="2")
    return base, Path(root), env


def _train_command(root: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "vireid", "train", "--preset", "smoke", "--data-root", str(root),
            "--output", str(out), "--deterministic", "--seed", "1", "eval.every=1", *extra]


@pytest.fixture(scope="module")
def finished_run(workspace):
    base, root, env = workspace
    out = base / "straight"
    done = subprocess.run(_train_command(root, out), env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_run_folder_describes_the_run(finished_run):
    for name in ("config.yaml", "log.txt", "metrics.jsonl", "final_metrics.json", "checkpoints/final.pt",
                 "checkpoints/cmc.pt", "mmlm/summary.json", "mmlm/matching.npz"):
        assert (finished_run / name).is_file(), name
    assert list((finished_run / "tb").glob("events.out.tfevents.*"))
    assert list((finished_run / "pseudo_labels").glob("cmc_phase1_epoch000.npz"))
    assert list((finished_run / "pseudo_labels").glob("cmc_phase2_epoch000.npz"))
    assert list((finished_run / "plots").glob("*.png"))
    events = [json.loads(line) for line in (finished_run / "metrics.jsonl").read_text().splitlines()]
    stages = {(e["event"], e["stage"]) for e in events}
    assert {("epoch", "cmc"), ("mmlm", "mmlm"), ("epoch", "sca"), ("eval", "cmc"), ("eval", "sca")} <= stages
    sca_epochs = [e for e in events if e["event"] == "epoch" and e["stage"] == "sca"]
    assert "loss_intra" in sca_epochs[-1] and "loss_inter" in sca_epochs[-1]  # smoke runs every loss
    # eval.every=1 with 2 CMC and 2 SCA epochs: one evaluation inside each stage, one after it
    evals = [(e["stage"], e["epoch"]) for e in events if e["event"] == "eval" and e["protocol"] == "all-single"]
    assert evals == [("cmc", 0), ("cmc", None), ("sca", 0), ("sca", None)]


def test_final_metrics_have_every_protocol_as_fractions(finished_run):
    final = json.loads((finished_run / "final_metrics.json").read_text())
    assert set(final) == set(PROTOCOLS)
    for res in final.values():
        for key in METRICS:
            assert 0.0 <= res[key] <= 1.0
        assert res["rank1"] <= res["rank5"] <= res["rank10"] <= res["rank20"]
        assert len(res["trials"]) == 1


def test_evaluate_checkpoint_command_matches_the_run(finished_run, workspace, tmp_path):
    _, root, env = workspace
    out = tmp_path / "m.json"
    done = subprocess.run([sys.executable, "-m", "vireid", "evaluate", "--checkpoint",
                           str(finished_run / "checkpoints" / "final.pt"), "--dataset", "sysu", "--data-root",
                           str(root), "--trials", "1", "--device", "cpu", "--json", str(out)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Rank-1" in done.stdout
    again = json.loads(out.read_text())
    final = json.loads((finished_run / "final_metrics.json").read_text())
    for name in PROTOCOLS:
        assert again[name]["rank1"] == pytest.approx(final[name]["rank1"], abs=1e-6)
        assert again[name]["mAP"] == pytest.approx(final[name]["mAP"], abs=1e-6)


def _wait_for_sca_epoch(run: Path, proc: subprocess.Popen, timeout: float) -> None:
    """Block until the run has checkpointed its first SCA epoch."""
    deadline = time.time() + timeout
    metrics = run / "metrics.jsonl"
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and '"stage": "sca"' in metrics.read_text():
            marker = run / "checkpoints" / "latest.txt"
            if marker.exists() and marker.read_text().strip() == "last.pt":
                return
        time.sleep(0.2)
    raise AssertionError("the run did not reach the SCA stage in time")


def test_killed_run_resumes_to_the_same_final_metrics(finished_run, workspace):
    base, root, env = workspace
    out = base / "killed"
    proc = subprocess.Popen(_train_command(root, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_sca_epoch(out, proc, timeout=900)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (out / "final_metrics.json").exists()
    # resumed with two augmentation worker processes: batches are seeded per batch, so the same numbers
    done = subprocess.run(_train_command(root, out, "--resume", "data.workers=2"), env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = json.loads((out / "final_metrics.json").read_text())
    straight = json.loads((finished_run / "final_metrics.json").read_text())
    assert resumed == straight


def test_existing_run_folder_is_not_overwritten_without_resume(finished_run, workspace):
    _, root, env = workspace
    done = subprocess.run(_train_command(root, finished_run), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "--resume" in done.stderr and "Traceback" not in done.stderr


def test_match_command_recomputes_the_runs_matching(finished_run, capsys):
    from vireid.cli import main

    summary = json.loads((finished_run / "mmlm" / "summary.json").read_text())
    assert main(["match", "--run", str(finished_run), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    recomputed = json.loads(out.strip().splitlines()[-1])
    assert recomputed["pairs"] == summary["pairs"]
    assert recomputed["pair_precision"] == pytest.approx(summary["pair_precision"])
    assert main(["match", "--run", str(finished_run), "--n-memories", "1", "--assignment", "nearest"]) == 0
    assert "n_memories=1" in capsys.readouterr().out


def test_match_command_on_a_feature_file(tmp_path, capsys):
    import numpy as np

    from vireid.cli import main

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16))
    labels = np.repeat(np.arange(3), 5)
    perm = np.array([2, 0, 1])  # infrared cluster perm[p] holds visible cluster p's identity
    fv = centres[labels] + 0.05 * rng.normal(size=(15, 16))
    fr = centres[labels] + 0.3 + 0.05 * rng.normal(size=(15, 16))
    path = tmp_path / "m.npz"
    np.savez(path, features_visible=fv, labels_visible=labels, features_infrared=fr,
             labels_infrared=perm[labels], pids_visible=labels, pids_infrared=labels)
    assert main(["match", "--features", str(path)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["pairs"] == 3 and result["pair_precision"] == 1.0
    np.savez(path, features_visible=fv, labels_visible=labels)
    assert main(["match", "--features", str(path)]) == 2
    assert "features_infrared" in capsys.readouterr().err


def test_no_clusters_stops_with_exit_3_and_the_folder_takes_the_fixed_settings(workspace, tmp_path, monkeypatch,
                                                                               capsys):
    from vireid.cli import main

    base, root, _ = workspace
    monkeypatch.setenv("VIREID_CACHE_DIR", str(base / "cache"))
    out = tmp_path / "noclusters"
    command = ["train", "--preset", "smoke", "--data-root", str(root), "--output", str(out), "--seed", "1"]
    # DBSCAN cannot find a core point with 1000 neighbours in this small set: no clusters at all
    assert main(command + ["cluster.min_samples=1000"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("vireid train: stopped:") and "Traceback" not in "\n".join(err)
    assert "cluster.eps (now 0.6)" in err[-1] and "cluster.min_samples (now 1000)" in err[-1]
    assert not (out / "final_metrics.json").exists()  # nothing looks finished
    assert "stopped:" in (out / "log.txt").read_text()
    # the same folder takes the fixed settings (here: CMC without epochs, the quickest finished run)
    assert main(command + ["--stages", "cmc", "cmc.phase1_epochs=0", "cmc.phase2_epochs=0"]) == 0
    printed = capsys.readouterr().out
    assert set(json.loads((out / "final_metrics.json").read_text())) == set(PROTOCOLS)
    assert "Rank-1" in printed and str(out / "final_metrics.json") in printed  # results on stdout


def test_report_of_the_run_has_every_section_and_evaluations_on_their_epochs(finished_run, tmp_path):
    from test_report import assert_report_structure
    from vireid.viz.curves import evaluation_points, read_events
    from vireid.viz.report import write_report

    events = read_events(finished_run / "metrics.jsonl")
    for stage in ("cmc", "sca"):  # evaluated after epoch index 0 (x = 1) and after the stage's 2nd epoch (x = 2)
        assert evaluation_points(events, stage)["all-single"]["rank1"][0] == [1.0, 2.0]
    page = assert_report_structure(write_report([finished_run], tmp_path / "report.html"), 1)
    assert len(page.images) == 1 + 2 + 1  # bars; CMC and SCA curves; plots/cmc.png
