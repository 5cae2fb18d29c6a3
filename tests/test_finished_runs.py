"""What `vireid train` says about a run folder whose run finished: without --resume it names the
results and both ways on; with --resume it says that the final model is evaluated again and
final_metrics.json rewritten. The resume line says something true for every checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model_helpers import model_for_tests
from vireid.cli import main
from vireid.config import config_to_dict, load_config
from vireid.engine.checkpoint import save_checkpoint
from vireid.engine.preflight import resume_line
from vireid.engine.run import RunFolder


pytestmark = pytest.mark.usefixtures("private_cache")


def _train(root: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--preset", "smoke", "--data-root", str(root), "--output", str(out), *extra]


def _finished_run(root: Path, out: Path) -> Path:
    """A run folder as a finished smoke run leaves it: config, final.pt (stage done), final metrics."""
    cfg = load_config("smoke", [f"data.root={root}", f"output={out}"])
    RunFolder(out, cfg, console=False).close()
    save_checkpoint(out / "checkpoints" / "final.pt", model=model_for_tests("resnet18"), stage="done", epoch=1,
                    config=config_to_dict(cfg))
    (out / "final_metrics.json").write_text(json.dumps({"placeholder": True}))
    return out


def test_a_finished_run_without_resume_names_its_results_and_both_ways_on(dataset, tmp_path, capsys):
    out = _finished_run(dataset, tmp_path / "run")
    assert main(_train(dataset, out)) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert f"{out} holds a finished run (results in {out / 'final_metrics.json'})" in lines[0]
    assert "another --output" in lines[0] and "--resume to evaluate its final model again" in lines[0]
    assert "already holds a run; use --resume to continue it" not in lines[0]


def test_resuming_a_finished_run_says_it_re_evaluates_and_rewrites_the_results(dataset, tmp_path, capsys):
    out = _finished_run(dataset, tmp_path / "run")
    assert main(_train(dataset, out, "--resume")) == 0
    err = capsys.readouterr().err
    assert (f"{out} holds a finished run: --resume evaluates its final model (final.pt) again and rewrites "
            f"{out / 'final_metrics.json'}") in err
    assert "placeholder" not in json.loads((out / "final_metrics.json").read_text())  # rewritten, as said


def test_the_resume_line_names_no_epoch_for_a_stage_without_epochs(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    between = {"stage": "mmlm", "epoch": -1, "path": str(run / "checkpoints" / "cmc.pt")}
    assert resume_line(between, run) == "resuming at the start of the MMLM stage (cmc.pt)"
    inside = {"stage": "sca", "epoch": 2, "path": str(run / "checkpoints" / "last.pt")}
    assert resume_line(inside, run) == "resuming after SCA epoch 3 (last.pt)"
    trained = {"stage": "done", "epoch": 5, "path": str(run / "checkpoints" / "final.pt")}
    assert resume_line(trained, run).startswith("the run's training had finished (final.pt)")
    (run / "final_metrics.json").write_text("{}")
    assert "holds a finished run" in resume_line(trained, run)
