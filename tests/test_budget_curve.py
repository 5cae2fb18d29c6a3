"""studies/budget_curve.py at a tiny scale (smoke preset, 16 synthetic people at 32×16): the runs it
branches off one CMC run equal runs trained from scratch for that many epochs, CMC-continued is the
snapshot D epochs later, every output is written, and a rerun reuses every folder. Plus the plan and
the verdict on hand-made numbers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from script_helpers import script_env
from vireid.data.synthetic import generate_synthetic

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "studies"))

import budget_curve  # noqa: E402

TINY = ["data.height=32", "data.width=16", "sca.epochs=1", "sca.warmup_epochs=0", "sca.intra_start=0",
        "sca.inter_start=0"]  # smoke: 2 CMC and 2 SCA iterations, so D = 1 epoch
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def curve(tmp_path_factory):
    base = tmp_path_factory.mktemp("budget_curve")
    root = generate_synthetic(base / "data", ids=16, height=32, width=16, seed=3, progress=False)
    env = script_env(cache=base / "cache", threads=2)
    args = ["--preset", "smoke", "--data-root", str(root), "--work", str(base / "work"), "--budgets", "1", "2",
            "--phase1", "1", "--seeds", "0", "--paper-lr", "1e-4", "--paper-lr-seeds",
            "0", "--oracle-budgets", "1", "--md", str(base / "table.md"), "--out", str(base / "record.md"), "--",
            *TINY]
    (base / "record.md").write_text(f"# Record\nintro\n{budget_curve.MARK_START}\nold\n{budget_curve.MARK_END}\nrest\n")
    done = _run(args, env)
    return base, Path(root), env, args, done.stdout, json.loads((base / "work" / "budget_curve.json").read_text())


def _run(args: list[str], env: dict) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, str(REPO / "studies" / "budget_curve.py"), *args], env=env,
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_every_run_and_output_is_there(curve):
    base, _, _, _, stdout, result = curve
    assert result["command"] == stdout.splitlines()[0] and result["delta"] == 1
    # the preset's learning rate (smoke: 3.5e-4) at budgets 1 and 2 (+1), the other one at budget 2 only
    assert sorted(result["lines"]) == ["lr0.0001-seed0", "lr0.00035-seed0"]
    kinds = sorted((r["lr"], r["seed"], r["kind"], r["epochs"]) for r in result["runs"])
    assert kinds == sorted([(3.5e-4, 0, "cmc", 1), (3.5e-4, 0, "cmc", 2), (3.5e-4, 0, "cmc", 3), (3.5e-4, 0, "mmm", 1),
                            (3.5e-4, 0, "mmm", 2), (3.5e-4, 0, "oracle", 1),
                            (1e-4, 0, "cmc", 2), (1e-4, 0, "cmc", 3), (1e-4, 0, "mmm", 2)])
    assert all("error" not in r for r in result["runs"])
    assert (base / "work" / "budget_curve.png").read_bytes()[:8] == PNG_MAGIC
    table = (base / "table.md").read_text()
    assert result["command"] in table and "Verdict:" in table
    assert table.count("\n| 0.00035 |") == 2 and table.count("\n| 0.0001 |") == 1
    record = (base / "record.md").read_text()  # the table replaced the old section, the rest is kept
    assert record.startswith("# Record\nintro\n") and record.endswith(f"{budget_curve.MARK_END}\nrest\n")
    assert "old" not in record and table in record
    for recs in result["epochs"].values():
        assert [r["epoch"] for r in recs] == list(range(len(recs)))
        assert 0.0 <= recs[0]["nn_infrared_to_visible"] <= 1.0
    # epoch 0 clusters the start weights (smoke: random, drawn from the seed), whatever the learning rate
    start = result["epochs"]["lr0.0001-seed0"][0]
    assert start["nn_infrared_to_visible"] == result["epochs"]["lr0.00035-seed0"][0]["nn_infrared_to_visible"]
    assert start["ari_visible"] == result["epochs"]["lr0.00035-seed0"][0]["ari_visible"]


@pytest.mark.slow
def test_a_branch_equals_a_run_trained_from_scratch_for_its_epochs(curve, tmp_path):
    base, root, env, _, _, result = curve
    branch = next(r for r in result["runs"] if (r["lr"], r["seed"], r["kind"], r["epochs"]) == (3.5e-4, 0, "cmc", 2))
    scratch = tmp_path / "scratch"
    done = subprocess.run([sys.executable, "-m", "vireid", "train", "--preset", "smoke", "--data-root", str(root),
                           "--output", str(scratch), "seed=0", "stages=[cmc,mmlm]", "cmc.phase1_epochs=1",
                           "cmc.phase2_epochs=1", *TINY], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    final = json.loads((scratch / "final_metrics.json").read_text())["all-single"]
    summary = json.loads((scratch / "mmlm" / "summary.json").read_text())
    assert branch["rank1"] == pytest.approx(final["rank1"], abs=1e-12)
    assert branch["mAP"] == pytest.approx(final["mAP"], abs=1e-12)
    assert branch["pair_precision"] == pytest.approx(summary["pair_precision"], abs=1e-12)


@pytest.mark.slow
def test_points_pair_each_budget_with_its_continued_snapshot(curve):
    _, _, _, _, _, result = curve
    runs = {(r["lr"], r["seed"], r["kind"], r["epochs"]): r for r in result["runs"]}
    point = next(p for p in result["points"] if p["lr"] == 3.5e-4 and p["budget"] == 1)
    assert point["seeds"] == [0]
    assert point["continued_rank1_per_seed"] == [runs[(3.5e-4, 0, "cmc", 2)]["rank1"]]
    gain = runs[(3.5e-4, 0, "mmm", 1)]["rank1"] - runs[(3.5e-4, 0, "cmc", 1)]["rank1"]
    assert point["gain_over_cmc_per_seed"] == pytest.approx([gain])
    assert point["pair_precision"] == runs[(3.5e-4, 0, "cmc", 1)]["pair_precision"]
    oracle = runs[(3.5e-4, 0, "oracle", 1)]
    assert oracle["pair_precision"] == 1.0


@pytest.mark.slow
def test_rerun_reuses_every_folder(curve):
    base, _, env, args, _, result = curve
    stamps = {r["run"]: (Path(r["run"]) / "final_metrics.json").stat().st_mtime_ns for r in result["runs"]}
    _run(args, env)
    again = json.loads((base / "work" / "budget_curve.json").read_text())
    assert [(r["run"], r["rank1"]) for r in again["runs"]] == [(r["run"], r["rank1"]) for r in result["runs"]]
    assert stamps == {r: (Path(r) / "final_metrics.json").stat().st_mtime_ns for r in stamps}


@pytest.mark.slow
def test_a_larger_budget_extends_the_finished_line_into_the_run_trained_from_scratch(curve, tmp_path):
    base, root, env, args, _, _ = curve
    work = tmp_path / "work"
    shutil.copytree(base / "work", work)
    line = work / "lr0.00035-seed0"  # finished at 2 + 1 CMC epochs; budget 3 asks for 3 + 1
    grown = ["--preset", "smoke", "--data-root", str(root), "--work", str(work), "--budgets", "1", "2", "3",
             "--phase1", "1", "--seeds", "0", "--paper-lr-seeds", "--oracle-budgets", "--json",
             str(tmp_path / "grown.json"), "--png", str(tmp_path / "grown.png"), "--", *TINY]
    done = _run(grown, env)
    assert "extending" in done.stderr and "cmc-upto003" in done.stderr
    assert (line / "cmc-upto003" / "final_metrics.json").is_file()  # the shorter run is kept, not lost
    assert (line / "snapshots" / "cmc_epoch004.pt").is_file()
    epochs = [json.loads(x)["epoch"] for x in (line / "cmc" / "metrics.jsonl").read_text().splitlines()
              if json.loads(x).get("event") == "epoch" and json.loads(x).get("stage") == "cmc"]
    assert epochs == [0, 1, 2, 3]
    scratch = tmp_path / "scratch"  # the same seed, trained for 4 CMC epochs in one go
    ran = subprocess.run([sys.executable, "-m", "vireid", "train", "--preset", "smoke", "--data-root", str(root),
                          "--output", str(scratch), "seed=0", "stages=[cmc]", "cmc.phase1_epochs=1",
                          "cmc.phase2_epochs=3", *TINY], env=env, capture_output=True, text=True, timeout=600)
    assert ran.returncode == 0, ran.stderr[-2000:]
    extended = json.loads((line / "cmc" / "final_metrics.json").read_text())["all-single"]
    final = json.loads((scratch / "final_metrics.json").read_text())["all-single"]
    assert extended["rank1"] == pytest.approx(final["rank1"], abs=1e-12)
    assert extended["mAP"] == pytest.approx(final["mAP"], abs=1e-12)
    result = json.loads((tmp_path / "grown.json").read_text())
    assert (3.5e-4, 0, "mmm", 3) in {(r["lr"], r["seed"], r["kind"], r["epochs"]) for r in result["runs"]}
    again = _run(grown, env)  # a rerun reuses the extended line
    assert "extending" not in again.stderr
    stamp = (line / "cmc" / "final_metrics.json").stat().st_mtime_ns
    first_plan = [a for a in grown if a != "3"]  # budgets 1 2 again: the longer line holds their states
    assert first_plan[first_plan.index("--budgets"):][:4] == ["--budgets", "1", "2", "--phase1"]
    _run(first_plan, env)
    assert (line / "cmc" / "final_metrics.json").stat().st_mtime_ns == stamp


def test_a_line_with_other_settings_is_not_extended(tmp_path):
    run = tmp_path / "line" / "cmc"
    run.mkdir(parents=True)
    from vireid.config import load_config, save_config

    save_config(load_config(preset="smoke", overrides=["cmc.phase1_epochs=1", "cmc.phase2_epochs=1"]),
                run / "config.yaml")
    longer = load_config(preset="smoke", overrides=["cmc.phase1_epochs=1", "cmc.phase2_epochs=3", "cmc.lr=0.01"])
    with pytest.raises(budget_curve.BudgetError, match="other settings"):
        budget_curve.set_aside(run, longer, tmp_path / "line" / "snapshots")
    same = load_config(preset="smoke", overrides=["cmc.phase1_epochs=1", "cmc.phase2_epochs=3"])
    with pytest.raises(budget_curve.BudgetError, match="cmc_epoch002.pt is missing"):
        budget_curve.set_aside(run, same, tmp_path / "line" / "snapshots")
    assert run.is_dir()  # refused: nothing moved


# ---------------------------------------------------------------------------- plan and verdict
def test_plan_shortens_the_seeds_outside_the_largest_and_adds_the_paper_lr():
    args = SimpleNamespace(budgets=[16, 8, 32], seeds=[0, 1, 2], largest_seeds=[0, 1], lr=1e-4, paper_lr=3.5e-4,
                           paper_lr_seeds=[0])
    lines = budget_curve.plan_lines(args, delta=6)
    assert [(x.lr, x.seed, x.budgets, x.top) for x in lines] == [
        (1e-4, 0, (8, 16, 32), 38), (1e-4, 1, (8, 16, 32), 38), (1e-4, 2, (8, 16), 22), (3.5e-4, 0, (32,), 38)]
    assert lines[2].snapshots == [8, 14, 16, 22]
    assert budget_curve.schedule(3, 4) == ["cmc.phase1_epochs=3", "cmc.phase2_epochs=0"]
    assert budget_curve.schedule(38, 4) == ["cmc.phase1_epochs=4", "cmc.phase2_epochs=34"]


def test_branches_share_the_continued_snapshot_with_the_next_budget():
    line = budget_curve.Line(1e-4, 0, (1, 2), 1)
    names = [(b.kind, b.epochs) for b in budget_curve.branches_of(line, [2])]
    assert names == [("cmc", 1), ("cmc", 2), ("mmm", 1), ("cmc", 3), ("mmm", 2), ("oracle", 2)]


def _point(budget: int, gains_cmc: list[float], gains_cont: list[float], precision: float) -> dict:
    import numpy as np

    return {"lr": 1e-4, "budget": budget, "pair_precision": precision,
            "gain_over_cmc_per_seed": gains_cmc, "gain_over_cmc": float(np.mean(gains_cmc)),
            "gain_over_cmc_std": float(np.std(gains_cmc)), "gain_over_continued_per_seed": gains_cont,
            "gain_over_continued": float(np.mean(gains_cont)), "gain_over_continued_std": float(np.std(gains_cont))}


def test_verdict_needs_both_controls_beaten_beyond_the_spread_and_half_the_pairs_right():
    points = [_point(8, [0.02, 0.03], [0.01, 0.02], 0.3),     # pairs mostly wrong
              _point(16, [0.02, -0.01], [0.01, 0.02], 0.6),   # one seed below CMC only
              _point(32, [0.03, 0.04], [0.02, 0.03], 0.6)]
    assert budget_curve.verdict(points, 1e-4) == {"found": True, "budget": 32}
    assert budget_curve.verdict(points[:2], 1e-4)["found"] is False


def test_verdict_projects_the_budget_where_the_precision_reaches_one_half():
    points = [_point(8, [0.0, 0.0], [0.0, 0.0], 0.2), _point(16, [0.0, 0.0], [0.0, 0.0], 0.3),
              _point(32, [0.0, 0.0], [0.0, 0.0], 0.4)]
    v = budget_curve.verdict(points, 1e-4)
    assert v["found"] is False and v["slope_per_doubling"] == pytest.approx(0.1)
    assert v["projected_budget"] == pytest.approx(64.0)  # +0.1 per doubling: 0.5 one doubling after 32
    assert "projects 0.5 at about 64 epochs" in budget_curve._trend(v)
    assert "at about 15,000 epochs" in budget_curve._trend({**v, "projected_budget": 15388.4})
    flat = budget_curve.verdict([_point(8, [0.0], [0.0], 0.3), _point(16, [0.0], [0.0], 0.2)], 1e-4)
    assert flat["projected_budget"] is None


def test_a_flat_trend_is_reported_as_such_not_as_a_number_of_epochs():
    v = budget_curve.verdict([_point(8, [0.0], [0.0], 0.020), _point(16, [0.0], [0.0], 0.021)], 1e-4)
    assert v["projected_budget"] > 1e6
    assert "beyond a million epochs" in budget_curve._trend(v)
