"""The `vireid` command: help, user errors as one line, feature-file evaluation."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from vireid.cli import main

SUBCOMMANDS = ("demo", "synth", "train", "evaluate", "info", "match", "export", "search")


def test_help_lists_every_subcommand(capsys):
    main([])
    out = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert name in out


def test_python_dash_m_runs_the_same_command():
    done = subprocess.run([sys.executable, "-m", "vireid", "--help"], capture_output=True, text=True, check=True)
    assert "evaluate" in done.stdout and "MMM" in done.stdout


def test_wrong_dataset_root_is_one_line_without_traceback(tmp_path, capsys):
    code = main(["info", "--dataset", "sysu", "--data-root", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    assert str(tmp_path) in err and "test_id.txt" in err


def test_unknown_config_key_suggests_the_closest(tmp_path, capsys):
    code = main(["train", "--dataset", "sysu", "--data-root", str(tmp_path), "--output", str(tmp_path / "run"),
                 "cluster.epss=0.5"])
    err = capsys.readouterr().err
    assert code == 2 and "cluster.epss" in err and "cluster.eps" in err


def test_overrides_may_follow_flags(tmp_path, monkeypatch):
    import vireid.engine.pipeline as pipeline

    seen = {}
    def fake_train(cfg, resume=False):
        seen.update(cfg=cfg, resume=resume)
        return pipeline.RunResult(final={}, run_dir=tmp_path / "run")

    monkeypatch.setattr(pipeline, "train", fake_train)
    code = main(["train", "--dataset", "sysu", "--data-root", str(tmp_path), "--output", str(tmp_path / "run"),
                 "cmc.lr=0.001", "--resume", "sca.epochs=7", "--seed", "3", "eval.every=2"])
    cfg = seen["cfg"]
    assert code == 0 and seen["resume"] is True
    assert (cfg.cmc.lr, cfg.sca.epochs, cfg.eval.every, cfg.seed) == (0.001, 7, 2, 3)


def test_a_stray_word_is_still_an_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--dataset", "sysu", "--data-root", str(tmp_path), "cmc.lr=0.001", "--seed", "3", "oops"])
    assert exit_.value.code == 2 and "unrecognized arguments: oops" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["info", "--dataset", "sysu", "--data-root", str(tmp_path), "cmc.lr=0.001"])  # takes no overrides


def _write_features(path, drop=None, **changes):
    rng = np.random.default_rng(0)
    arrays = dict(query_features=rng.normal(size=(6, 8)), query_pids=np.array([0, 1, 2, 0, 1, 2]),
                  query_camids=np.array([3, 3, 6, 6, 3, 6]), gallery_features=rng.normal(size=(5, 8)),
                  gallery_pids=np.array([0, 1, 2, 0, 1]), gallery_camids=np.array([1, 2, 4, 5, 1]))
    arrays.update(changes)
    if drop:
        arrays.pop(drop)
    np.savez(path, **arrays)
    return path


def test_evaluate_features_prints_the_metrics(tmp_path, capsys):
    path = _write_features(tmp_path / "f.npz")
    assert main(["evaluate", "--features", str(path), "--protocol", "regdb", "--json", str(tmp_path / "m.json"),
                 "--plots", str(tmp_path / "plots")]) == 0
    out = capsys.readouterr().out
    assert "mAP" in out and "mINP" in out
    assert (tmp_path / "m.json").exists()
    assert (tmp_path / "plots" / "cmc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("drop", ["gallery_camids", "query_features"])
def test_evaluate_features_names_the_missing_array(tmp_path, capsys, drop):
    path = _write_features(tmp_path / "f.npz", drop=drop)
    assert main(["evaluate", "--features", str(path)]) == 2
    assert drop in capsys.readouterr().err


def test_evaluate_features_names_a_misshaped_array(tmp_path, capsys):
    path = _write_features(tmp_path / "f.npz", query_pids=np.array([0, 1, 2]))
    assert main(["evaluate", "--features", str(path)]) == 2
    assert "query_pids" in capsys.readouterr().err


def _resolved_config(args, tmp_path, monkeypatch):
    """The config `vireid train ARGS` would train with (the pipeline replaced by a recorder)."""
    import vireid.engine.pipeline as pipeline

    seen = {}

    def fake_train(cfg, resume=False):
        seen["cfg"] = cfg
        return pipeline.RunResult(final={}, run_dir=tmp_path / "run")

    monkeypatch.setattr(pipeline, "train", fake_train)
    assert main(["train", *args, "--data-root", str(tmp_path), "--output", str(tmp_path / "run")]) == 0
    return seen["cfg"]


def _option_help(help_text: str, option: str) -> str:
    """The help of one option, its lines joined."""
    block = help_text.split(f"\n  {option}", 1)[1].split("\n  -", 1)[0]
    return " ".join(block.split())


@pytest.mark.parametrize("args, profile", [
    (["--dataset", "sysu"], "reference"),
    (["--dataset", "regdb"], "reference"),
    (["--dataset", "llcm"], "reference"),
    (["--preset", "smoke"], "paper"),
    ([], "paper"),
])
def test_train_help_states_the_profile_each_choice_gets(args, profile, tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    profile_help = _option_help(text, "--profile")
    assert "reference with the sysu, regdb and llcm presets" in profile_help
    assert "paper with demo, smoke and bench and without a preset" in profile_help
    assert "profile reference" in _option_help(text, "--dataset")
    assert "profile paper" in _option_help(text, "--preset")
    assert _resolved_config(args, tmp_path, monkeypatch).profile == profile


def test_train_help_names_each_presets_output_folder(capsys):
    from vireid.config import list_presets, load_config

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    output_help = _option_help(capsys.readouterr().out, "--output")
    assert "runs/vireid for the others and without a preset" in output_help and load_config().output == "runs/vireid"
    for preset in list_presets():
        output = load_config(preset).output
        assert output == "runs/vireid" or output in output_help, preset


def test_train_help_has_examples_for_every_dataset_and_names_the_real_data_settings(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    examples = text.split("examples:", 1)[1].split("exit status:", 1)[0]
    for dataset in ("sysu", "regdb", "llcm"):
        assert f"--dataset {dataset}" in examples
    for setting in ("data.trial=", "model.weights_path=", "--resume", "docs/reproduce.md", "docs/method.md"):
        assert setting in examples, setting
