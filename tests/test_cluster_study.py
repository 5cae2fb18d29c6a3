"""studies/cluster_study.py: re-clustering saved features over k1 x eps and matching every pair."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from script_helpers import script_env

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "studies"))

import cluster_study  # noqa: E402


def test_clustering_measures_count_outliers_as_singletons():
    # truth 1,1,1,2; clusters {0,1}, samples 2 and 3 outliers. As singletons the only agreeing pair is
    # (0,1): index 1, expected 3*1/6, max (3+1)/2 -> ARI 1/3 (as one cluster "-1" it would be 0).
    m = cluster_study.clustering_measures(np.array([0, 0, -1, -1]), np.array([1, 1, 1, 2]))
    assert m["clusters"] == 1 and m["outliers"] == 2 and m["clusters_per_person"] == 0.5
    assert m["ari"] == pytest.approx(1 / 3)


def _blobs(rng, people: int, per: int, offset: float) -> tuple[np.ndarray, np.ndarray]:
    centres = np.eye(people, 16)
    pids = np.repeat(np.arange(people), per)
    feats = centres[pids] + offset + 0.02 * rng.standard_normal((len(pids), 16))
    return (feats / np.linalg.norm(feats, axis=1, keepdims=True)).astype(np.float32), pids


def test_study_finds_the_radius_that_recovers_the_people(tmp_path):
    rng = np.random.default_rng(0)
    fv, pv = _blobs(rng, 6, 8, 0.0)
    fr, pr = _blobs(rng, 6, 5, 0.05)
    npz = tmp_path / "features.npz"
    np.savez(npz, features_visible=fv, labels_visible=pv, pids_visible=pv, features_infrared=fr,
             labels_infrared=pr, pids_infrared=pr)
    page = tmp_path / "mmlm.md"
    page.write_text(f"# MMLM\n{cluster_study.MARK_START}\nSTALE-NUMBERS\n{cluster_study.MARK_END}\nend\n")
    env = script_env()
    done = subprocess.run([sys.executable, str(REPO / "studies" / "cluster_study.py"), "--features", str(npz),
                           "--k1", "4", "8", "--eps", "0.05", "0.5", "--match-k1", "8", "--out", str(page), "--json",
                           str(tmp_path / "out.json")], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "out.json").read_text())
    for modality, people in (("visible", 6), ("infrared", 6)):
        sweep = result["sweep"][modality]
        # the defaults' k1 (30) and eps (0.6) join the grid: 3 k1 x 3 eps
        assert sorted({(r["k1"], r["eps"]) for r in sweep}) == [(k, e) for k in (4, 8, 30) for e in (0.05, 0.5, 0.6)]
        assert result["people"][modality] == people
        # separated blobs: k1 at least a person's size recovers the people; a tiny radius does not
        best = next(r for r in sweep if r["k1"] == 8 and r["eps"] == 0.5)
        assert best["clusters"] == 6 and best["ari"] == pytest.approx(1.0)
        assert next(r for r in sweep if r["k1"] == 4 and r["eps"] == 0.05)["ari"] < 0.9
    assert len(result["matching"]) == 9  # at k1 = 8: 3 visible x 3 infrared radii
    for r in result["matching"]:
        if "pair_precision" in r:
            assert r["pair_precision"] <= r["reachable_pair_precision"] + 1e-9
    cell = next(r for r in result["matching"] if r["eps_visible"] == 0.5 and r["eps_infrared"] == 0.5)
    # one cluster per person in each modality, the infrared blobs near their visible twins
    assert cell["reachable_pair_precision"] == 1.0 and cell["pair_precision"] == 1.0
    assert cell["chance_pair_precision"] == pytest.approx(1 / 6)
    text = page.read_text()
    assert text.startswith("# MMLM\n") and text.endswith(f"{cluster_study.MARK_END}\nend\n") and "STALE-NUMBERS" not in text
    assert "Visible clusterings" in text and "MMLM pair precision" in text


def test_study_refuses_a_run_folder_without_matching_features(tmp_path):
    env = script_env()
    done = subprocess.run([sys.executable, str(REPO / "studies" / "cluster_study.py"), str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "mmlm/matching.npz" in done.stderr
