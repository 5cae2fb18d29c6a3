"""The stage benchmarks end to end at a tiny scale (smoke preset, 16 synthetic people at 32×16):
studies/oracle_labels.py reaches the requested pair precision (checked against the shared labels
the SCA checkpoint trained on) and reuses its finished runs; studies/matching_study.py studies
every matching variant on its CMC snapshots and replaces only its own section of the Markdown file.
Plus the small helpers they rely on, on hand-made inputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from script_helpers import script_env
from vireid.config import load_config, save_config
from vireid.data.records import INFRARED, VISIBLE
from vireid.data.registry import open_dataset
from vireid.data.synthetic import generate_synthetic
from vireid.models.checkpoint import read_checkpoint

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "studies"))

import matching_study  # noqa: E402
import stage_runs  # noqa: E402

TINY = ["data.height=32", "data.width=16"]
SHORT_SCA = ["sca.epochs=1", "sca.warmup_epochs=0", "sca.intra_start=0", "sca.inter_start=0"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    base = tmp_path_factory.mktemp("stage_benchmarks")
    root = generate_synthetic(base / "data", ids=16, height=32, width=16, seed=3, progress=False)
    env = script_env(cache=base / "cache", threads=2)
    return base, Path(root), env


def _run(script: str, args: list[str], env: dict) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, str(REPO / "studies" / script), *args], env=env, capture_output=True,
                          text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _train_pids(root: Path) -> tuple[np.ndarray, np.ndarray]:
    train = open_dataset("sysu", root).train
    return (np.array([s.pid for s in train if s.modality == VISIBLE]),
            np.array([s.pid for s in train if s.modality == INFRARED]))


# ---------------------------------------------------------------------------- oracle_labels.py
@pytest.fixture(scope="module")
def oracle(workspace):
    base, root, env = workspace
    out = base / "oracle"
    args = ["--preset", "smoke", "--data-root", str(root), "--work", str(out / "work"), "--seeds", "0",
            "--precisions", "1", "0.5", "--png", str(out / "curve.png"), "--json", str(out / "oracle.json"),
            "--md", str(out / "oracle.md"), "--", *TINY, *SHORT_SCA]
    first = _run("oracle_labels.py", args, env)
    result = json.loads((out / "oracle.json").read_text())
    return out, args, first.stdout, result


@pytest.mark.slow
def test_oracle_writes_every_output_with_its_command(oracle):
    out, _, stdout, result = oracle
    assert stdout.splitlines()[0].startswith("python ") and "oracle_labels.py" in stdout.splitlines()[0]
    assert result["command"] == stdout.splitlines()[0]
    assert result["done"] == result["total"] == 6  # 2 curves × 2 precisions, MMLM's precision, MMLM itself
    assert set(result["references"]) >= {"start", "cmc_only", "supervised", "chance_rank1",
                                         "mmlm_reached_pair_precision"}
    for run in result["runs"]:
        assert "error" not in run
        assert {"curve", "requested", "seed", "rank1", "mAP", "pair_precision", "run"} <= set(run)
        assert 0.0 <= run["rank1"] <= 1.0 and 0.0 <= run["mAP"] <= 1.0
    assert (out / "curve.png").read_bytes()[:8] == PNG_MAGIC
    table = (out / "oracle.md").read_text()
    assert result["command"] in table and "supervised" in table and table.count("\n| ") >= 8


@pytest.mark.slow
def test_identity_clusters_reach_the_requested_precision_in_the_labels_sca_trained_on(oracle, workspace):
    _, root, _ = workspace
    _, _, _, result = oracle
    pids_v, pids_r = _train_pids(root)
    identity = [r for r in result["runs"] if r["curve"] == "identity"]
    assert sorted(r["requested"] for r in identity) == [0.5, 1.0]
    for run in identity:
        assert run["pair_precision"] == run["requested"]  # 8 training people: 4 or 8 of them paired right
        extra = read_checkpoint(Path(run["run"]) / "checkpoints" / "final.pt")["extra"]
        labels_v, labels_r = extra["labels_visible"].numpy(), extra["labels_infrared"].numpy()
        right = []
        for pid in np.unique(pids_v):  # the infrared people carrying this person's visible label
            (label,) = np.unique(labels_v[pids_v == pid])
            right.append(set(pids_r[labels_r == label]) == {pid})
        assert np.mean(right) == run["requested"]
    assert result["references"]["supervised"]["rank1"] == next(r["rank1"] for r in identity if r["requested"] == 1.0)


@pytest.mark.slow
def test_cmc_clusters_and_mmlm_points_follow_the_cmc_run(oracle):
    _, _, _, result = oracle
    runs = {(r["curve"], r["requested"]): r for r in result["runs"]}
    reached = result["references"]["mmlm_reached_pair_precision"]["0"]
    # MMLM on the resumed copy repeats the CMC run's matching; the oracle matches its precision exactly
    assert runs[("mmlm", None)]["pair_precision"] == pytest.approx(reached, abs=1e-12)
    assert runs[("cmc", "MMLM's")]["pair_precision"] == pytest.approx(reached, abs=1e-12)
    for p in (1.0, 0.5):
        run = runs[("cmc", p)]
        count = run["pair_precision"] * run["clusters_visible"]
        assert count == pytest.approx(round(count)) and run["pair_precision"] <= p + 0.5 / run["clusters_visible"]
    assert runs[("cmc", 1.0)]["pair_precision"] >= runs[("cmc", 0.5)]["pair_precision"]


@pytest.mark.slow
def test_oracle_rerun_reuses_the_finished_runs(oracle, workspace):
    out, args, _, result = oracle
    _, _, env = workspace
    stamps = {r["run"]: (Path(r["run"]) / "final_metrics.json").stat().st_mtime_ns for r in result["runs"]}
    _run("oracle_labels.py", args, env)
    again = json.loads((out / "oracle.json").read_text())
    assert [(r["run"], r["rank1"], r["pair_precision"]) for r in again["runs"]] == \
        [(r["run"], r["rank1"], r["pair_precision"]) for r in result["runs"]]
    assert stamps == {r: (Path(r) / "final_metrics.json").stat().st_mtime_ns for r in stamps}


# ---------------------------------------------------------------------------- matching_study.py
@pytest.fixture(scope="module")
def study(workspace):
    base, root, env = workspace
    out = base / "study"
    out.mkdir()
    page = out / "mmlm.md"
    page.write_text(f"# MMLM\nintro\n{matching_study.MARK_START}\nold numbers\n{matching_study.MARK_END}\ntrailer\n")
    _run("matching_study.py", ["--preset", "smoke", "--data-root", str(root), "--work", str(out / "work"),
                               "--out", str(page), "--snapshots", "1", "2", "--",
                               *TINY, "cmc.phase1_epochs=1", "cmc.phase2_epochs=1"], env)
    return out, json.loads((out / "work" / "matching_study.json").read_text()), page.read_text()


@pytest.mark.slow
def test_study_covers_every_variant_of_every_snapshot(study):
    out, result, _ = study
    assert sorted(result["snapshots"]) == ["1", "2"]
    assert (out / "work" / "snapshots" / "cmc_epoch001.pt").is_file()
    for row in result["snapshots"].values():
        assert {"rank1", "mAP", "ari_visible", "ari_infrared", "clusters_visible", "clusters_infrared",
                "chance_pair_precision", "reachable_pair_precision"} <= set(row)
        variants = {(v["assignment"], v["n_memories"], v["cost_sum_over"]): v for v in row["variants"]}
        assert sorted(variants) == sorted((a, n, c) for a in ("hungarian", "nearest") for n in (1, 2, 4, 8)
                                          for c in ("visible", "infrared"))
        for v in variants.values():
            assert 0.0 <= v["pair_precision"] <= row["reachable_pair_precision"] + 1e-12
        for a in ("hungarian", "nearest"):  # one memory per cluster: the cost is the same either way
            one_v, one_r = variants[(a, 1, "visible")], variants[(a, 1, "infrared")]
            assert one_v["pair_precision"] == one_r["pair_precision"]
            assert one_v["ari_transferred"] == one_r["ari_transferred"]


@pytest.mark.slow
def test_last_snapshot_is_the_model_the_cmc_run_evaluated(study):
    out, result, _ = study
    final = json.loads((out / "work" / "cmc" / "final_metrics.json").read_text())["all-single"]
    assert result["snapshots"]["2"]["rank1"] == pytest.approx(final["rank1"], abs=1e-9)


@pytest.mark.slow
def test_study_replaces_only_its_section(study):
    _, result, page = study
    assert page.startswith("# MMLM\nintro\n") and page.endswith(f"{matching_study.MARK_END}\ntrailer\n")
    assert "old numbers" not in page and result["command"] in page
    assert "| hungarian | 4 | visible |" in page and page.count(matching_study.MARK_START) == 1


# ---------------------------------------------------------------------------- helpers
def test_section_is_appended_with_markers_when_the_page_has_none():
    page = matching_study.replace_section("# MMLM\ntext\n", "table\n")
    assert page == f"# MMLM\ntext\n\n{matching_study.MARK_START}\ntable\n{matching_study.MARK_END}\n"
    assert matching_study.replace_section(page, "new\n").count("table") == 0


def test_chance_and_reachable_pair_precision_by_hand():
    # visible clusters of persons 0, 0, 1, 2; infrared clusters of persons 0, 1, 1
    labels_v, pids_v = np.array([0, 0, 1, 2, 2, 3]), np.array([0, 0, 0, 1, 1, 2])
    labels_r, pids_r = np.array([0, 1, 2, 2]), np.array([0, 1, 1, 1])
    chance, reachable = matching_study.chance_and_reachable(labels_v, pids_v, labels_r, pids_r)
    assert chance == pytest.approx((1 / 3 + 1 / 3 + 2 / 3 + 0) / 4)  # share of infrared clusters of one's person
    assert reachable == 3 / 4  # person 2 has no infrared cluster


def test_finished_run_is_reused_only_with_the_same_settings(tmp_path):
    cfg = load_config("smoke", [f"output={tmp_path}", "data.root=/data/a"])
    save_config(cfg, tmp_path / "config.yaml")
    stage_runs.check_same_run(tmp_path, load_config("smoke", [f"output={tmp_path}", "data.root=/moved"]))
    with pytest.raises(stage_runs.BenchmarkError, match="cmc.lr"):
        stage_runs.check_same_run(tmp_path, load_config("smoke", [f"output={tmp_path}", "cmc.lr=0.01"]))


def test_a_cmc_only_run_is_reused_whatever_the_settings_of_the_stages_it_does_not_run(tmp_path):
    cmc_only = ["stages=[cmc]", f"output={tmp_path}"]
    save_config(load_config("smoke", cmc_only), tmp_path / "config.yaml")
    stage_runs.check_same_run(tmp_path, load_config("smoke", [*cmc_only, "sca.lr=0.01", "mmlm.n_memories=2"]))
    with pytest.raises(stage_runs.BenchmarkError, match="cmc.lr"):
        stage_runs.check_same_run(tmp_path, load_config("smoke", [*cmc_only, "cmc.lr=0.01"]))
    with pytest.raises(stage_runs.BenchmarkError, match="stages"):  # a full run is another run
        stage_runs.check_same_run(tmp_path, load_config("smoke", [f"output={tmp_path}", "sca.lr=0.01"]))


def test_a_run_saved_before_a_setting_existed_is_reused_while_that_setting_keeps_its_default(tmp_path):
    import yaml
    cfg = load_config("smoke", [f"output={tmp_path}"])
    save_config(cfg, tmp_path / "config.yaml")
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    del saved["sca"]["classifier_init"]  # as an older vireid wrote it
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    stage_runs.check_same_run(tmp_path, cfg)
    with pytest.raises(stage_runs.BenchmarkError, match="classifier_init"):
        stage_runs.check_same_run(tmp_path, load_config("smoke", [f"output={tmp_path}",
                                                                  "sca.classifier_init=prototypes"]))


def test_oracle_job_plan_follows_the_options():
    """--identity-precisions, --no-reached and --variant-set shape the plan without training anything:
    the variant's settings reach every SCA run and keep its folders apart from the plain runs'."""
    import oracle_labels

    def plan(*argv: str) -> list:
        args = oracle_labels.build_parser().parse_args(["--seeds", "0", *argv])
        return oracle_labels.jobs_of(0, 0.2, args, Path("/w"))

    plain = plan("--precisions", "1", "0.5", "--identity-precisions", "1")
    assert [(j.curve, j.requested) for j in plain] == [("cmc", 1.0), ("cmc", 0.5), ("cmc", oracle_labels.REACHED),
                                                       ("identity", 1.0), ("mmlm", None)]
    variant = plan("--precisions", "1", "--curves", "cmc", "--no-reached", "--variant-set", "sca.lr=0.01")
    assert [(j.curve, j.requested) for j in variant] == [("cmc", 1.0), ("mmlm", None)]
    assert all("sca.lr=0.01" in j.overrides() for j in variant)
    assert {j.folder for j in variant}.isdisjoint({j.folder for j in plain})


def test_ablation_table_replaces_only_its_marked_section_of_a_record(tmp_path):
    import ablation

    table = "# Ablation (preset demo)\n\n| configuration | Rank-1 (%) |\n|---|---|\n| CMC only | 17.3 |\n"
    record = tmp_path / "record.md"
    record.write_text(f"# Stage ablation\n\n**Question.** q\n\n{ablation.MARK_START}\nold\n{ablation.MARK_END}\n\n"
                      "## What it shows\nkept\n")
    text = ablation.write_page(record, table).read_text()
    assert text.startswith("# Stage ablation\n\n**Question.** q\n") and text.endswith("## What it shows\nkept\n")
    assert "| CMC only | 17.3 |" in text and "old" not in text and "# Ablation (preset demo)" not in text
    plain = tmp_path / "plain.md"  # a page without markers: the table, then its kept notes
    plain.write_text("# Ablation (earlier)\nstale\n\n## Notes\nkept\n")
    assert ablation.write_page(plain, table).read_text() == table + "\n## Notes\nkept\n"


def test_the_studies_default_pages_exist_and_carry_their_markers():
    import ablation
    import cluster_study

    for module, option in ((ablation, "--out"), (matching_study, "--out"), (cluster_study, "--out")):
        source = Path(module.__file__).read_text()
        default = source.split(f'"{option}", default="', 1)[1].split('"', 1)[0]
        page = (REPO / default).read_text()
        assert module.MARK_START in page and module.MARK_END in page, (module.__name__, default)
