"""What the stage benchmarks (ablation.py, oracle_labels.py, matching_study.py) share.

- The data and start weights they run on: the demo's synthetic set and its source pre-training by
  default, or a user's dataset (`--dataset/--data-root`) with any preset (`--preset`).
- Run folders that are reused when finished (and only if their config.yaml describes the same run),
  resumed when interrupted, and SCA variants that resume a copy of one CMC run.
- The numbers read back from a finished run folder, the chance level, and the command line to print.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import yaml

from vireid.config import Config, flatten_config, load_config, resolve_cache_dir, save_config
from vireid.engine.reuse import RUN_LOCK, changed_settings
from vireid.errors import VireidError
from vireid.fileio import atomic_write, write_json

# What a variant takes from the CMC run it resumes: everything but the checkpoints (copied apart),
# the CMC run's own end products, the per-epoch label files and a killed run's lock file.
NOT_COPIED = ("checkpoints", "final_metrics.json", "plots", "tb", "mmlm", "pseudo_labels", "demo_summary.json",
              RUN_LOCK)


class BenchmarkError(VireidError):
    """A benchmark cannot reuse or build one of its run folders."""


def command_line() -> str:
    """The command that is running, as a user would type it again."""
    return "python " + shlex.join(sys.argv)


def command_footer(fig, command: str, width: int = 150) -> None:
    """Print the command that made a figure under it, wrapped to the figure's width."""
    import textwrap

    fig.text(0.0, -0.01, "\n".join(textwrap.wrap(command, width)), fontsize=6.5, family="monospace", color="0.35",
             va="top")


def add_setup_arguments(parser: argparse.ArgumentParser, preset: str = "demo") -> None:
    """--preset, --dataset, --data-root, --cache-dir and trailing KEY=VALUE overrides."""
    parser.add_argument("--preset", default=preset, help=f"config preset of every run (default {preset})")
    parser.add_argument("--dataset", default=None, help="dataset of --data-root (default: the preset's)")
    parser.add_argument("--data-root", default=None, metavar="DIR",
                        help="your dataset (default: the demo's synthetic set, generated in the cache)")
    parser.add_argument("--cache-dir", default=None, help="image cache, demo data and start weights "
                                                           "(default: the vireid cache)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides for every run")


@dataclass
class Setup:
    """The preset, dataset and start weights every run of a benchmark shares."""

    preset: str
    dataset: str
    root: Path
    weights: str  # model.weights_path ("" when the preset needs no file)
    overrides: list[str] = field(default_factory=list)  # the user's, data.cache_dir included
    demo_data: bool = False  # a synthetic set generated in the cache (no --data-root)
    data_name: str = "the demo's synthetic data"  # what describe() calls a generated set

    def config(self, output: Path, extra: Sequence[str] = ()) -> Config:
        """The preset with this data and start weights, the user's overrides, then `extra`; run in `output`."""
        data = [f"data.dataset={self.dataset}", f"data.root={self.root}"]
        weights = [f"model.weights_path={self.weights}"] if self.weights else []
        return load_config(self.preset, data + weights + self.overrides + list(extra) + [f"output={output}"])

    def describe(self) -> str:
        given = " ".join(f"`{o}`" for o in self.overrides)
        data = self.data_name if self.demo_data else f"dataset {self.dataset} at {self.root}"
        where = f"preset `{self.preset}`, {data}"
        return where + (f", overrides {given}" if given else "")


def prepare_setup(args: argparse.Namespace, synthetic: tuple[str, dict] | None = None) -> Setup:
    """Resolve the data (generating a synthetic set in the cache when no root is given: the demo's, or
    `synthetic` = (folder name, generate_synthetic's parameters)) and build the start weights once."""
    import vireid.demo  # noqa: F401 - registers the `synthetic` start weights
    from vireid.data.synthetic import generate_synthetic
    from vireid.demo.command import ensure_demo_data
    from vireid.engine.start_weights import resolve_start_weights

    overrides = ([f"data.cache_dir={args.cache_dir}"] if args.cache_dir else []) + list(args.overrides)
    cfg = load_config(args.preset, overrides)
    if args.data_root:
        root, dataset = Path(args.data_root).expanduser(), args.dataset or cfg.data.dataset
    elif synthetic is None:
        root, dataset = ensure_demo_data(resolve_cache_dir(cfg) / "demo-data"), "sysu"
    else:
        name, params = synthetic
        root, dataset = Path(generate_synthetic(resolve_cache_dir(cfg) / name, **params)), params.get("layout", "sysu")
    cfg.data.root, cfg.data.dataset = str(root), dataset
    resolve_start_weights(cfg)
    name = "the demo's synthetic data" if synthetic is None else f"the synthetic set of the preset's header ({root})"
    return Setup(args.preset, dataset, root, cfg.model.weights_path, overrides, demo_data=not args.data_root,
                 data_name=name)


# ---------------------------------------------------------------------------- run folders
def finished(run: Path) -> bool:
    return (Path(run) / "final_metrics.json").is_file()


def settings_changed(run: Path, cfg: Config, ignore: Sequence[str] = ()) -> str:
    """The settings (up to six, `key: saved -> new`) in which the run in `run` differs from `cfg`'s
    under the rules of `vireid train --resume`, keys in `ignore` aside; '' when none."""
    old = flatten_config(yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8")) or {})
    changed = [(k, pair) for k, pair in changed_settings(old, cfg).items() if k not in ignore]
    return ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed[:6])


def check_same_run(run: Path, cfg: Config) -> None:
    """A finished folder is reused only when its config.yaml describes `cfg`'s run."""
    detail = settings_changed(run, cfg)
    if detail:
        raise BenchmarkError(f"{run} holds a finished run with other settings ({detail}); delete it or "
                             "give another --work folder")


def train_or_reuse(cfg: Config, hooks: Sequence = ()) -> Path:
    """Train `cfg` in `cfg.output`; a finished folder is reused, an interrupted one resumed."""
    from vireid.engine.pipeline import train

    out = Path(cfg.output)
    if finished(out):
        check_same_run(out, cfg)
        return out
    train(cfg, resume=out.exists(), hooks=hooks)
    return out


def resume_variant(base: Path, cfg: Config, keep_checkpoints: bool = False, checkpoint: Path | None = None,
                   hooks: Sequence = ()) -> Path:
    """Run `cfg`'s remaining stages on a copy of the run `base`, resumed from `checkpoint` (default:
    its `checkpoints/cmc.pt`, which resumes into MMLM), so every variant starts from the same model.

    A `checkpoint` saved during CMC (a snapshot after epoch e) branches the run off there: `cfg` then
    sets the CMC epochs to e, so CMC ends at once and the variant is what a run of e epochs would
    have been (or sets more, and CMC trains on from e); its metrics.jsonl keeps the CMC epochs up to
    e. `hooks` go to the training engine. The copy is made whole or not at all;
    config.yaml is rewritten for the variant; once finished, the copied checkpoint and the per-epoch
    last.pt are deleted (final.pt stays) unless `keep_checkpoints`."""
    from vireid.engine.pipeline import train
    from vireid.models.checkpoint import LATEST

    out = Path(cfg.output)
    if finished(out):
        check_same_run(out, cfg)
        return out
    source = Path(checkpoint) if checkpoint is not None else base / "checkpoints" / "cmc.pt"
    if not out.exists():
        partial = out.with_name(out.name + ".copying")
        shutil.rmtree(partial, ignore_errors=True)
        skip = NOT_COPIED if checkpoint is None else (*NOT_COPIED, "metrics.jsonl", "log.txt")
        shutil.copytree(base, partial, ignore=lambda folder, names: [n for n in names if Path(folder) == base
                                                                     and n in skip])
        if checkpoint is not None:
            _branch_records(base, partial, source)
        (partial / "checkpoints").mkdir()
        shutil.copy2(source, partial / "checkpoints" / source.name)
        atomic_write(partial / "checkpoints" / LATEST, source.name + "\n")
        partial.rename(out)
    save_config(cfg, out / "config.yaml")  # the variant resumes the copied run as its own
    train(cfg, resume=True, hooks=hooks)
    if not keep_checkpoints:
        for name in {source.name, "cmc.pt", "last.pt"}:
            (out / "checkpoints" / name).unlink(missing_ok=True)
    return out


def _branch_records(base: Path, partial: Path, snapshot: Path) -> None:
    """A branched variant's metrics.jsonl (the CMC epochs up to the snapshot's) and a first log line."""
    from vireid.models.checkpoint import read_checkpoint

    last = int(read_checkpoint(snapshot)["epoch"])
    kept = [line for line in (base / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip() and _cmc_epoch_at_most(json.loads(line), last)]
    (partial / "metrics.jsonl").write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    (partial / "log.txt").write_text(f"branched from {base} after CMC epoch {last + 1} ({snapshot.name})\n",
                                     encoding="utf-8")


def _cmc_epoch_at_most(record: dict, last: int) -> bool:
    return record.get("event") == "epoch" and record.get("stage") == "cmc" and int(record["epoch"]) <= last


def report_failures(runs: list[dict]) -> int:
    """Name every run that failed (its "error") on stderr; the study's exit status (1 if any failed)."""
    failed = [r for r in runs if "error" in r]
    for r in failed:
        print(f"failed: {r['run']}: {r['error']}", file=sys.stderr)
    return 1 if failed else 0


# ---------------------------------------------------------------------------- numbers
def final_metrics(run: Path) -> tuple[str, dict]:
    """(headline protocol, its final metrics): the first protocol evaluated (SYSU: all-single)."""
    final = json.loads((Path(run) / "final_metrics.json").read_text(encoding="utf-8"))
    protocol = next(iter(final))
    return protocol, final[protocol]


def mmlm_summary(run: Path) -> dict:
    """The run's mmlm/summary.json (MMLM's or the oracle's matching), {} when it has none."""
    path = Path(run) / "mmlm" / "summary.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def evaluate_start(setup: Setup, cache: Path | None = None) -> dict:
    """Headline Rank-1 / mAP of the start weights (no training), cached in `cache` (a JSON file)."""
    if cache is not None and cache.is_file():
        return json.loads(cache.read_text(encoding="utf-8"))
    from vireid.data.registry import open_dataset
    from vireid.demo.command import evaluate_model
    from vireid.engine.context import RunContext
    from vireid.engine.device import seed_everything, select_device
    from vireid.models import create_model

    cfg = setup.config(Path("unused"))
    device = select_device(cfg.device)
    seed_everything(cfg.seed)  # what the start weights leave unset is seeded as in a run
    model = create_model(cfg.model).to(device).eval()
    ctx = RunContext.from_config(cfg, None, device)
    results = evaluate_model(model, open_dataset(cfg.data.dataset, cfg.data.root, trial=cfg.data.trial), ctx,
                             cfg.eval.trials)[0]
    protocol = next(iter(results))
    start = {"protocol": protocol, "rank1": results[protocol]["rank1"], "mAP": results[protocol]["mAP"]}
    if cache is not None:
        write_json(cache, start)
    return start


def chance_rank1(setup: Setup, protocol: str) -> float:
    """Rank-1 of a random ranking under `protocol` (first gallery draw), NaN when unknown."""
    from vireid.data.registry import open_dataset
    from vireid.viz.runs import dataset_chance_rank1

    cfg = setup.config(Path("unused"))
    chance = dataset_chance_rank1(open_dataset(cfg.data.dataset, cfg.data.root, trial=cfg.data.trial))
    return float(chance.get(protocol, math.nan))


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean and (population) standard deviation of the finite values, and how many there were."""
    finite = np.array([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if not len(finite):
        return math.nan, math.nan, 0
    return float(finite.mean()), float(finite.std()), len(finite)
