"""The command line as an operator meets it: every mistake is one line with the documented exit status,
a run that cannot start leaves nothing behind, a failed run never blocks its own fix, results go to
stdout and logs to stderr.

Everything runs in-process through `vireid.cli.main` on a tiny synthetic dataset and tiny checkpoints
saved with `save_checkpoint`; no test trains.
"""

from __future__ import annotations

import json
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

import vireid.cli as cli
from model_helpers import model_for_tests
from vireid.cli import main
from vireid.config import config_to_dict, load_config
from vireid.data.registry import open_dataset
from vireid.engine.checkpoint import save_checkpoint
from vireid.engine.run import RunFolder

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("private_cache")


def _checkpoint(path: Path, overrides: tuple[str, ...] = (), stored_arch: str | None = None,
                break_weights: str | None = None) -> Path:
    """A smoke-preset (ResNet-18, 64x32) checkpoint; `stored_arch` makes its config claim another
    network; `break_weights` = "nan" fills every weight with NaN, "drop" leaves out the first weight."""
    cfg = load_config("smoke", list(overrides))
    torch.manual_seed(0)
    model = model_for_tests("resnet18")
    with torch.no_grad():
        model.infrared_stem.conv1.weight.add_(0.05 * torch.randn_like(model.infrared_stem.conv1.weight))
        if break_weights == "nan":
            for p in model.parameters():
                p.fill_(float("nan"))
    config = config_to_dict(cfg)
    if stored_arch:
        config["model"]["arch"] = stored_arch
    save_checkpoint(path, model=model, stage="done", epoch=0, config=config)
    if break_weights == "drop":
        state = torch.load(path, weights_only=True)
        state["model"].pop(next(iter(state["model"])))
        torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("ckpt") / "final.pt")


def _one_line(capsys, code: int, expected: int = 2, after_logs: bool = False) -> str:
    """The single stderr line of a failed command, after checking its exit status. With `after_logs`
    (a run that had started) the run's log lines may precede it: it is then the last line."""
    captured = capsys.readouterr()
    lines = [line for line in captured.err.strip().splitlines() if line.strip()]
    assert code == expected, captured.err
    assert "Traceback" not in captured.err, captured.err
    assert len(lines) == 1 or (after_logs and lines), captured.err
    return lines[-1]


def _train(root: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--preset", "smoke", "--data-root", str(root), "--output", str(out), *extra]


# -- train: everything is checked before the run folder exists -------------------------------------
def _offline(monkeypatch, tmp_path):
    import torchvision.models._api as api

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("no network here")

    monkeypatch.setattr(api, "load_state_dict_from_url", refuse)


@pytest.mark.parametrize("case", ["cmc_lr", "sca_lr", "weights_missing", "weights_random", "weights_foreign",
                                  "imagenet_offline", "output_under_a_file", "cache_unwritable"])
def test_train_checks_its_inputs_before_creating_the_run_folder(case, dataset, checkpoint, tmp_path, monkeypatch,
                                                                 capsys):
    out = tmp_path / "run"
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    random_bytes = tmp_path / "random.pth"
    random_bytes.write_bytes(np.random.default_rng(0).bytes(4096))
    extra, named = {
        "cmc_lr": (["cmc.lr=-1"], "cmc.lr"),
        "sca_lr": (["sca.lr=0"], "sca.lr"),
        "weights_missing": (["model.pretrained=imagenet", f"model.weights_path={tmp_path / 'nope.pth'}"],
                            str(tmp_path / "nope.pth")),
        "weights_random": (["model.pretrained=imagenet", f"model.weights_path={random_bytes}"], str(random_bytes)),
        "weights_foreign": (["model.pretrained=imagenet", f"model.weights_path={checkpoint}"],
                            "not a torchvision resnet18 state_dict"),
        "imagenet_offline": (["model.pretrained=imagenet"], "model.weights_path"),
        "output_under_a_file": ([], str(blocker)),
        "cache_unwritable": ([], "VIREID_CACHE_DIR"),
    }[case]
    if case == "imagenet_offline":
        _offline(monkeypatch, tmp_path)
    if case == "output_under_a_file":
        out = blocker / "run"
    if case == "cache_unwritable":
        monkeypatch.setenv("VIREID_CACHE_DIR", str(blocker / "cache"))
    line = _one_line(capsys, main(_train(dataset, out, *extra)))
    assert line.startswith("vireid train: error:") and named in line
    assert not out.exists()  # nothing to block the same command once fixed


@pytest.mark.parametrize("split", ["train", "test"])
def test_an_unreadable_image_stops_train_before_the_run_folder_exists(split, dataset, tmp_path, capsys):
    import shutil

    root = Path(shutil.copytree(dataset, tmp_path / "data"))
    pid = int((root / "exp" / f"{split}_id.txt").read_text().split(",")[0])
    broken = sorted((root / "cam1" / f"{pid:04d}").glob("*.jpg"))[0]
    broken.write_text("a text file named .jpg")
    out = tmp_path / "runs" / "run"
    line = _one_line(capsys, main(_train(root, out)))
    assert line.startswith("vireid train: error: cannot read image") and str(broken) in line
    assert not (tmp_path / "runs").exists()  # neither the run folder nor the parent its lock created


@pytest.mark.parametrize("state", ["missing", "empty"])
def test_resume_of_a_folder_without_a_run_is_an_error_naming_it(state, dataset, tmp_path, capsys):
    out = tmp_path / "mistyped"
    if state == "empty":
        out.mkdir()
    line = _one_line(capsys, main(_train(dataset, out, "--resume")))
    assert f"cannot resume: {out}" in line
    assert out.exists() == (state == "empty") and not (out / "config.yaml").exists()


def _run_folder(root: Path, out: Path) -> Path:
    """A run folder as `vireid train --preset smoke` leaves it, without checkpoints yet."""
    cfg = load_config("smoke", [f"data.root={root}", f"output={out}"])
    RunFolder(out, cfg, console=False).close()
    return out


def test_resume_falls_back_to_the_newest_readable_checkpoint(dataset, checkpoint, tmp_path, capsys):
    out = _run_folder(dataset, tmp_path / "run")
    folder = out / "checkpoints"
    cfg = load_config("smoke", [f"data.root={dataset}", f"output={out}"])
    model = model_for_tests("resnet18")
    save_checkpoint(folder / "final.pt", model=model, stage="done", epoch=1, config=config_to_dict(cfg))
    (folder / "last.pt").write_bytes(b"\0" * 64)  # damaged after it was written
    (folder / "latest.txt").write_text("last.pt\n")
    assert main(_train(dataset, out, "--resume")) == 0
    captured = capsys.readouterr()
    assert "WARNING" in captured.err and "last.pt" in captured.err and "final.pt" in captured.err
    assert (folder / "last.pt.damaged").is_file() and not (folder / "last.pt").exists()
    assert json.loads((out / "final_metrics.json").read_text())["all-single"]["rank1"] >= 0
    # results on stdout, logs on stderr
    assert "Rank-1" in captured.out and "resuming" not in captured.out and "resuming" in captured.err


def test_resume_refuses_a_checkpoint_of_another_network(dataset, tmp_path, capsys):
    out = _run_folder(dataset, tmp_path / "run")
    _checkpoint(out / "checkpoints" / "last.pt", stored_arch="resnet50")
    line = _one_line(capsys, main(_train(dataset, out, "--resume")))
    assert "written for resnet50, this run is resnet18" in line


def test_demo_checks_its_run_folder_before_generating_data(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    line = _one_line(capsys, main(["demo", "--data", str(tmp_path / "data"), "--output", str(blocker / "run")]))
    assert str(blocker) in line
    assert not (tmp_path / "data").exists()  # no minutes spent on data and start weights first


# -- exit statuses ----------------------------------------------------------------------------------
def test_a_stage_left_without_input_stops_with_exit_3_and_blocks_nothing(dataset, tmp_path, capsys):
    out = tmp_path / "run"
    # SCA alone trains on the start model's mixed clusters; with a tiny eps there are none
    line = _one_line(capsys, main(_train(dataset, out, "--stages", "sca", "cluster.eps=0.001")), expected=3,
                     after_logs=True)
    assert line.startswith("vireid train: stopped:")
    assert "cluster.eps (now 0.001)" in line and "cluster.min_samples (now 2)" in line
    assert f"reuses {out}" in line and not (out / "final_metrics.json").exists()
    assert "stopped:" in (out / "log.txt").read_text()


@pytest.mark.parametrize("command", ["train", "demo", "evaluate", "synth", "extract"])
def test_ctrl_c_is_exit_130_and_only_training_commands_suggest_resume(command, monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, f"cmd_{command}", interrupted)
    argv = {"train": ["train"], "demo": ["demo"], "evaluate": ["evaluate"], "synth": ["synth", "--out", "x"],
            "extract": ["extract", "--checkpoint", "c", "--dataset", "sysu", "--data-root", "d", "--out", "f.npz"]}
    line = _one_line(capsys, main(argv[command]), expected=130)
    assert "interrupted" in line
    assert ("--resume" in line) == (command in ("train", "demo"))


def test_an_unexpected_error_is_one_line_naming_a_crash_log_with_the_traceback(monkeypatch, tmp_path, capsys):
    import tempfile

    def broken(args):
        raise RuntimeError("boom in the library")

    monkeypatch.setattr(cli, "cmd_evaluate", broken)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    line = _one_line(capsys, main(["evaluate"]), expected=1)
    assert "RuntimeError: boom in the library" in line
    log = Path(line.split("the traceback is in ")[1].split(";")[0])
    assert log.parent == tmp_path
    text = log.read_text()
    assert "Traceback" in text and "boom in the library" in text and "raise RuntimeError" in text


def test_a_crash_during_a_run_leaves_its_log_in_the_run_folder(dataset, tmp_path, monkeypatch, capsys):
    from vireid.engine.pipeline import Pipeline

    def broken(self):
        raise RuntimeError("boom in a stage")

    monkeypatch.setattr(Pipeline, "run", broken)
    out = tmp_path / "run"
    line = _one_line(capsys, main(_train(dataset, out)), expected=1, after_logs=True)
    logs = list(out.glob("vireid-crash-*.log"))
    assert len(logs) == 1 and str(logs[0]) in line and "boom in a stage" in logs[0].read_text()
    assert "boom in a stage" in (out / "log.txt").read_text()  # the run's own log says why it stopped


@pytest.mark.parametrize("command", [None, "train", "demo", "evaluate", "extract", "export", "search", "match",
                                     "synth", "info", "report"])
def test_help_documents_the_exit_statuses(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([command, "--help"] if command else ["--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0
    for code in ("0", "1", "2", "3", "130"):
        assert f"\n  {code} " in out
    if command:
        assert "outputs:" in out


# -- one line for every user error -----------------------------------------------------------------
def _features(path: Path, **changes) -> Path:
    rng = np.random.default_rng(0)
    arrays = dict(query_features=rng.normal(size=(6, 8)), query_pids=np.array([0, 1, 2, 0, 1, 2]),
                  query_camids=np.array([3, 3, 6, 6, 3, 6]), gallery_features=rng.normal(size=(5, 8)),
                  gallery_pids=np.array([0, 1, 2, 0, 1]), gallery_camids=np.array([1, 2, 4, 5, 1]))
    arrays.update(changes)
    np.savez(path, **arrays)
    return path


def _matching(path: Path, nan: bool = False) -> Path:
    rng = np.random.default_rng(0)
    fv = rng.normal(size=(12, 8))
    if nan:
        fv[3, 1] = np.nan
    np.savez(path, features_visible=fv, labels_visible=np.repeat(np.arange(3), 4),
             features_infrared=rng.normal(size=(12, 8)), labels_infrared=np.repeat(np.arange(3), 4))
    return path


def _bad_input(case: str, dataset: Path, checkpoint: Path, tmp: Path) -> tuple[list[str], str]:
    """The command line of one mistake, and what its error line must name."""
    blocker = tmp / "a-file"  # a file where a folder is expected
    empty, random_file = tmp / "empty.pt", tmp / "random.pt"
    on_data = ["--dataset", "sysu", "--data-root", str(dataset), "--device", "cpu"]
    query = next((dataset / "cam3").rglob("*.jpg"))
    search = ["search", "--query", str(query), "--gallery", str(dataset / "cam1"), "--device", "cpu"]
    good = str(checkpoint)
    special = tmp / "special.pt"
    if case == "evaluate_wrong_network":
        return ["evaluate", "--checkpoint", str(_checkpoint(special, stored_arch="resnet50")), *on_data], \
            "does not fit this resnet50"
    if case == "evaluate_missing_weight":
        return ["evaluate", "--checkpoint", str(_checkpoint(special, break_weights="drop")), *on_data], \
            "missing weight visible_stem.conv1.weight"
    if case == "evaluate_empty_checkpoint":
        return ["evaluate", "--checkpoint", str(empty), *on_data], "is empty (0 bytes)"
    if case == "evaluate_random_checkpoint":
        return ["evaluate", "--checkpoint", str(random_file), *on_data], "is not a vireid checkpoint"
    if case == "evaluate_batch_size_0":
        return ["evaluate", "--checkpoint", good, *on_data, "--batch-size", "0"], "--batch-size"
    if case == "evaluate_trials_0":
        return ["evaluate", "--checkpoint", good, *on_data, "--trials", "0"], "--trials"
    if case == "evaluate_json_under_a_file":
        return ["evaluate", "--features", str(_features(tmp / "f.npz")), "--json", str(blocker / "m.json")], \
            str(blocker)
    if case == "evaluate_plots_under_a_file":
        return ["evaluate", "--features", str(_features(tmp / "f.npz")), "--plots", str(blocker / "plots")], \
            str(blocker)
    if case == "evaluate_cache_unwritable":
        return ["evaluate", "--checkpoint", good, *on_data], "VIREID_CACHE_DIR"
    if case == "evaluate_nan_model":
        return ["evaluate", "--checkpoint", str(_checkpoint(special, break_weights="nan")), *on_data], \
            "NaN or infinite features"
    if case == "evaluate_features_nan":
        nan = _features(tmp / "f.npz", query_features=np.full((6, 8), np.nan))
        return ["evaluate", "--features", str(nan)], "query_features has NaN"
    if case == "evaluate_features_empty_query":
        none = _features(tmp / "f.npz", query_features=np.zeros((0, 8)), query_pids=np.zeros(0, int),
                         query_camids=np.zeros(0, int))
        return ["evaluate", "--features", str(none)], "query_features has no rows"
    if case == "match_features_nan":
        return ["match", "--features", str(_matching(tmp / "m.npz", nan=True))], "features_visible has NaN"
    if case == "match_features_random":
        return ["match", "--features", str(random_file)], str(random_file)
    if case == "match_n_memories_0":
        return ["match", "--features", str(_matching(tmp / "m.npz")), "--n-memories", "0"], "--n-memories"
    if case == "match_missing_run":
        return ["match", "--run", str(tmp / "nope")], str(tmp / "nope")
    if case == "export_nan_model":
        return ["export", "--checkpoint", str(_checkpoint(special, break_weights="nan")), "--out",
                str(tmp / "m.onnx")], "NaN or infinite features"
    if case == "export_out_under_a_file":
        return ["export", "--checkpoint", good, "--out", str(blocker / "m.onnx")], str(blocker)
    if case == "export_without_onnx":
        return ["export", "--checkpoint", good, "--out", str(tmp / "m.onnx")], 'pip install "vireid[export]"'
    if case == "search_nan_model":
        return [*search, "--checkpoint", str(_checkpoint(special, break_weights="nan")), "--out",
                str(tmp / "s.png")], "NaN or infinite features"
    if case == "search_out_under_a_file":
        return [*search, "--checkpoint", good, "--out", str(blocker / "s.png")], str(blocker)
    if case == "search_cache_unwritable":
        return [*search, "--checkpoint", good, "--out", str(tmp / "s.png")], "VIREID_CACHE_DIR"
    if case == "search_topk_0":
        return [*search, "--checkpoint", good, "--topk", "0"], "--topk"
    if case == "synth_ids_0":
        return ["synth", "--out", str(tmp / "syn"), "--ids", "0"], "--ids"
    if case == "synth_out_under_a_file":
        return ["synth", "--out", str(blocker / "syn"), "--ids", "4"], str(blocker)
    if case == "report_out_under_a_file":
        return ["report", str(tmp), "--out", str(blocker / "r.html")], str(blocker)
    if case == "extract_out_under_a_file":
        return ["extract", "--checkpoint", good, *on_data, "--out", str(blocker / "f.npz")], str(blocker)
    if case == "extract_empty_checkpoint":
        return ["extract", "--checkpoint", str(empty), *on_data, "--out", str(tmp / "f.npz")], "is empty (0 bytes)"
    assert case == "info_empty_root"
    return ["info", "--dataset", "sysu", "--data-root", ""], "root is empty"


BAD_INPUTS = [
    "evaluate_wrong_network", "evaluate_missing_weight", "evaluate_empty_checkpoint", "evaluate_random_checkpoint",
    "evaluate_batch_size_0", "evaluate_trials_0", "evaluate_json_under_a_file", "evaluate_plots_under_a_file",
    "evaluate_cache_unwritable", "evaluate_nan_model", "evaluate_features_nan", "evaluate_features_empty_query",
    "match_features_nan", "match_features_random", "match_n_memories_0", "match_missing_run",
    "export_nan_model", "export_out_under_a_file", "export_without_onnx", "search_nan_model",
    "search_out_under_a_file", "search_cache_unwritable", "search_topk_0", "synth_ids_0", "synth_out_under_a_file",
    "report_out_under_a_file", "extract_out_under_a_file", "extract_empty_checkpoint", "info_empty_root",
]


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_user_errors_are_one_line_naming_the_input(case, dataset, checkpoint, tmp_path, monkeypatch, capsys):
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "random.pt").write_bytes(np.random.default_rng(1).bytes(2048))
    argv, named = _bad_input(case, dataset, checkpoint, tmp_path)
    if case.endswith("cache_unwritable"):
        monkeypatch.setenv("VIREID_CACHE_DIR", str(tmp_path / "a-file" / "cache"))
    if case == "export_without_onnx":
        monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now raises ImportError
    computed = []
    if case in ("evaluate_json_under_a_file", "evaluate_plots_under_a_file"):  # refused before the work
        import vireid.evaluation.feature_file as feature_file

        monkeypatch.setattr(feature_file, "evaluate_feature_file", lambda *a: computed.append(a))
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own checks (bad numbers) exit like every other mistake
        code = exit_.code
    line = _one_line(capsys, code)
    assert line.startswith(f"vireid {argv[0]}: error:") and named in line, line
    assert not computed
    assert not (tmp_path / "m.onnx").exists() and not (tmp_path / "s.json").exists()


# -- outputs: evaluate uses the run's trials; extract round-trips to evaluate and match ---------------
def test_evaluate_checkpoint_uses_the_runs_trials_unless_told(dataset, tmp_path, capsys):
    ckpt = _checkpoint(tmp_path / "two-trials.pt", overrides=("eval.trials=2",))
    base = ["evaluate", "--checkpoint", str(ckpt), "--dataset", "sysu", "--data-root", str(dataset),
            "--device", "cpu", "--json", str(tmp_path / "m.json")]
    assert main(base) == 0
    out = capsys.readouterr().out
    assert "gallery draws per protocol: 2 (the run's eval.trials" in out
    assert all(len(res["trials"]) == 2 for res in json.loads((tmp_path / "m.json").read_text()).values())
    assert main(base + ["--trials", "1"]) == 0
    assert "gallery draws per protocol: 1 (--trials)" in capsys.readouterr().out


def test_extract_test_split_is_what_evaluate_features_scores(dataset, checkpoint, tmp_path, capsys):
    feats = tmp_path / "feats.npz"
    on_data = ["--dataset", "sysu", "--data-root", str(dataset), "--device", "cpu"]
    assert main(["extract", "--checkpoint", str(checkpoint), *on_data, "--out", str(feats)]) == 0
    assert f"wrote {feats}" in capsys.readouterr().out
    query, gallery = open_dataset("sysu", dataset).evaluation_splits(1)["all-single"][0]
    with np.load(feats) as z:
        assert z["query_pids"].tolist() == [s.pid for s in query]
        assert z["gallery_camids"].tolist() == [s.camid for s in gallery]
        assert z["query_features"].shape[0] == len(query) and str(z["protocol"]) == "all-single"
    assert main(["evaluate", "--features", str(feats), "--protocol", "sysu", "--json", str(tmp_path / "f.json")]) == 0
    assert main(["evaluate", "--checkpoint", str(checkpoint), *on_data, "--trials", "1", "--json",
                 str(tmp_path / "c.json")]) == 0
    from_file = json.loads((tmp_path / "f.json").read_text())["sysu"]
    from_checkpoint = json.loads((tmp_path / "c.json").read_text())["all-single"]
    for key in ("rank1", "rank5", "mAP", "mINP"):
        assert from_file[key] == pytest.approx(from_checkpoint[key], abs=1e-6)


def test_extract_train_split_is_what_match_features_reads(dataset, checkpoint, tmp_path, capsys):
    feats = tmp_path / "train.npz"
    assert main(["extract", "--checkpoint", str(checkpoint), "--dataset", "sysu", "--data-root", str(dataset),
                 "--device", "cpu", "--split", "train", "--out", str(feats)]) == 0
    train = open_dataset("sysu", dataset).train
    with np.load(feats) as z:
        for modality in ("visible", "infrared"):
            pids = [s.pid for s in train if s.modality == modality]
            assert z[f"pids_{modality}"].tolist() == pids
            assert z[f"features_{modality}"].shape[0] == len(pids) == z[f"labels_{modality}"].shape[0]
        has_clusters = (z["labels_visible"] >= 0).any() and (z["labels_infrared"] >= 0).any()
    code = main(["match", "--features", str(feats), "--device", "cpu"])
    if has_clusters:
        assert code == 0 and json.loads(capsys.readouterr().out.strip().splitlines()[-1])["pairs"] >= 1
    else:  # an untrained model may cluster nothing; then match says so in one line
        assert "holds no cluster" in _one_line(capsys, code)


# -- help and README ---------------------------------------------------------------------------------
def _subparsers() -> dict:
    import argparse

    parser = cli.build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_every_option_says_its_default_and_every_command_what_it_does_and_writes():
    import argparse

    for name, parser in _subparsers().items():
        assert parser.description, f"vireid {name} has no description"
        assert "outputs:" in (parser.epilog or ""), f"vireid {name} does not say where its outputs go"
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.option_strings or action.default in (None, False, argparse.SUPPRESS):
                continue
            text = formatter._get_help_string(action) if action.help else ""
            assert "default" in text, f"vireid {name} {action.option_strings[0]} hides its default"


def test_readme_and_manual_show_every_command_and_the_exit_statuses():
    # the README shows the main commands; the manual (docs/*.md, all in the site's nav: see
    # tests/test_docs_layout.py) shows every command and, in docs/training.md, the exit statuses
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    manual = "\n".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "docs").glob("*.md")))
    for command in _subparsers():
        assert f"vireid {command}" in manual, f"no page of docs/ shows vireid {command}"
    for command in ("demo", "train", "info", "evaluate", "search", "export", "report"):
        assert f"vireid {command}" in readme, f"README does not show vireid {command}"
    training = (ROOT / "docs" / "training.md").read_text(encoding="utf-8")
    for code in ("0", "1", "2", "3", "130"):
        assert f"| {code} |" in training, f"docs/training.md's exit status table lacks {code}"
