"""Matching study: what drives MMLM's pair precision, on CMC models of increasing quality.

    python studies/matching_study.py [--snapshots 2 4 8 16] [--work runs/matching_study] [--out docs/experiments/matching-and-clusters.md]
        [--json FILE] [--preset demo] [--dataset NAME --data-root DIR] [-- KEY=VALUE ...]

Trains the CMC stage once (default: the demo preset with `cmc.phase1_epochs=8 cmc.phase2_epochs=8`,
16 epochs; KEY=VALUE overrides replace them) and saves the model after each --snapshots global CMC
epoch (0 = the start weights). For every snapshot it measures the model (cross-modal Rank-1 / mAP of
the headline protocol; per-modality clustering: ARI, cluster counts; mixed clusters holding both
modalities and how many of those agree on the identity) and runs MMLM's matching on its per-modality
clusters in every variant: assignment hungarian | nearest × n_memories 1 | 2 | 4 | 8 × cost summed
over the visible | infrared memories, recording the pair precision (share of visible clusters whose
partner has the same majority identity) and the ARI of the transferred visible labels. Next to them:
the reachable pair precision (share of visible clusters for which an infrared cluster of their
majority identity exists) and the chance level (a uniformly drawn partner).

Outputs: JSON (--json, default <work>/matching_study.json) and Markdown tables, printed and written
between the markers `<!-- matching-study:start -->` and `<!-- matching-study:end -->` of --out (the
rest of the file is kept; without markers the section is appended). The CMC run folder and the
snapshots in --work are reused when finished, and an interrupted CMC run is resumed.
KEY=VALUE overrides go before the options or after `--`.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from torch import nn

from stage_runs import Setup, add_setup_arguments, command_line, finished, prepare_setup, train_or_reuse
from vireid.clustering.quality import chance_agreement, reachable_agreement
from vireid.config import Config, config_to_dict
from vireid.engine.checkpoint import save_checkpoint
from vireid.engine.hooks import EpochEnd, Hook
from vireid.errors import VireidError
from vireid.fileio import write_json

SCHEDULE = ["cmc.phase1_epochs=8", "cmc.phase2_epochs=8"]  # before the user's overrides, which win
VARIANTS = [(assignment, n, over) for assignment in ("hungarian", "nearest") for n in (1, 2, 4, 8)
            for over in ("visible", "infrared")]
MARK_START, MARK_END = "<!-- matching-study:start -->", "<!-- matching-study:end -->"
MODEL_KEYS = ("clusters_visible", "clusters_infrared", "clusters_mixed", "ari_visible", "ari_infrared", "ari_mixed",
              "mixed_cross_modal_clusters", "mixed_cross_modal_correct")


class SnapshotHook(Hook):
    """Save the model after the chosen global CMC epochs (1-based) into `folder`."""

    def __init__(self, epochs: list[int], folder: Path, cfg: Config) -> None:
        self.epochs, self.folder, self.config = set(epochs), folder, config_to_dict(cfg)

    def after_epoch(self, end: EpochEnd) -> None:
        if end.stage == "cmc" and end.epoch + 1 in self.epochs:
            save_checkpoint(snapshot_path(self.folder, end.epoch + 1), model=end.model, stage="cmc",
                            epoch=end.epoch, config=self.config)


def snapshot_path(folder: Path, epoch: int) -> Path:
    return folder / f"cmc_epoch{epoch:03d}.pt"


def save_start_snapshot(cfg: Config, path: Path) -> None:
    """The start weights as snapshot 0 (what CMC starts from)."""
    from vireid.engine.device import seed_everything
    from vireid.models import create_model

    seed_everything(cfg.seed)
    save_checkpoint(path, model=create_model(cfg.model), stage="cmc", epoch=-1, config=config_to_dict(cfg))


def train_snapshots(setup: Setup, work: Path, epochs: list[int]) -> tuple[Config, dict[int, Path]]:
    """Train (or reuse) the CMC run and return its config and {epoch: snapshot file}."""
    cfg = setup.config(work / "cmc", ["stages=[cmc]"])
    folder = work / "snapshots"
    paths = {e: snapshot_path(folder, e) for e in epochs}
    missing = [e for e in epochs if e > 0 and not paths[e].is_file()]
    if missing and finished(Path(cfg.output)):
        raise VireidError(f"{cfg.output} is finished but lacks the snapshots after epochs {missing}; delete it "
                          "(and its snapshots) or give another --work folder")
    train_or_reuse(cfg, hooks=[SnapshotHook(epochs, folder, cfg)])
    if 0 in epochs and not paths[0].is_file():
        save_start_snapshot(cfg, paths[0])
    lost = [e for e in epochs if not paths[e].is_file()]  # the run stopped between its checkpoint and the snapshot
    if lost:
        raise VireidError(f"the snapshots after CMC epochs {lost} are missing from {folder}; delete {cfg.output} "
                          "and run again")
    return cfg, paths


def chance_and_reachable(labels_v: np.ndarray, pids_v: np.ndarray, labels_r: np.ndarray, pids_r: np.ndarray
                         ) -> tuple[float, float]:
    """Pair precision of a uniformly drawn infrared partner (expected), and the most any pairing can
    reach: the share of visible clusters whose majority identity is some infrared cluster's majority."""
    return (chance_agreement(labels_v, pids_v, labels_r, pids_r),
            reachable_agreement(labels_v, pids_v, labels_r, pids_r))


def study_snapshot(model: nn.Module, cfg: Config, dataset, train_set, ctx) -> dict:
    """The model's evaluation and clustering, and every matching variant on its clusters."""
    from vireid.demo.command import evaluate_model
    from vireid.engine.features import cluster_train_set
    from vireid.engine.mmlm import match_round

    results = evaluate_model(model, dataset, ctx, cfg.eval.trials)[0]
    protocol = next(iter(results))
    clustering = cluster_train_set(model, train_set, cfg.cluster, ctx, mixed=True)
    truth = (train_set.visible.pids, train_set.infrared.pids)
    chance, reachable = chance_and_reachable(clustering.labels_v, truth[0], clustering.labels_r, truth[1])
    row = {"protocol": protocol, "rank1": results[protocol]["rank1"], "mAP": results[protocol]["mAP"],
           **{k: clustering.metrics[k] for k in MODEL_KEYS if k in clustering.metrics},
           "chance_pair_precision": chance, "reachable_pair_precision": reachable, "variants": []}
    if clustering.num_v == 0 or clustering.num_r == 0:
        return row  # nothing to match
    for assignment, n, over in VARIANTS:
        mmlm = replace(cfg.mmlm, assignment=assignment, n_memories=n, cost_sum_over=over)
        _, summary = match_round(clustering, mmlm, ctx.device, truth)
        row["variants"].append({"assignment": assignment, "n_memories": n, "cost_sum_over": over,
                                **{k: summary[k] for k in ("pair_precision", "ari_transferred", "ari_all", "pairs",
                                                           "rounds") if k in summary}})
    return row


def study(cfg: Config, paths: dict[int, Path]) -> dict[int, dict]:
    """{epoch: study_snapshot} for every snapshot, with one dataset, training set and context."""
    from vireid.data.registry import open_dataset
    from vireid.engine.context import RunContext
    from vireid.engine.device import select_device
    from vireid.engine.trainset import build_train_set
    from vireid.models.factory import load_model

    device = select_device(cfg.device)
    ctx = RunContext.from_config(cfg, None, device)
    dataset = open_dataset(cfg.data.dataset, cfg.data.root, trial=cfg.data.trial)
    train_set = build_train_set(dataset, cfg.data.height, cfg.data.width, ctx.cache_dir)
    rows = {}
    for epoch, path in sorted(paths.items()):
        model, _ = load_model(path)
        rows[epoch] = study_snapshot(model.to(device), cfg, dataset, train_set, ctx)
        print(f"snapshot after CMC epoch {epoch}: Rank-1 {100 * rows[epoch]['rank1']:.1f}%, best pair precision "
              f"{max((v['pair_precision'] for v in rows[epoch]['variants']), default=float('nan')):.3f}", flush=True)
    return rows


# ---------------------------------------------------------------------------- outputs
def _num(value, digits: int = 3) -> str:
    return "–" if value is None or value != value else f"{value:.{digits}f}"


def markdown(rows: dict[int, dict], info: dict) -> str:
    """Three tables: the models, then pair precision and transferred-label ARI of every variant per model."""
    epochs = sorted(rows)
    name = lambda e: "start" if e == 0 else f"epoch {e}"  # noqa: E731
    lines = [f"`{info['command']}`", "",
             f"{info['setup']}; protocol {info['protocol']}; {info['minutes']:.0f} min.", "",
             "#### The CMC models", "",
             "| CMC model | Rank-1 (%) | mAP (%) | ARI visible | ARI infrared | clusters V / R | mixed clusters "
             "with both modalities (agreeing) | reachable pair precision | chance pair precision |",
             "|---|---|---|---|---|---|---|---|---|"]
    for e in epochs:
        r = rows[e]
        mixed = (f"{r.get('mixed_cross_modal_clusters', '–')} ({_num(r.get('mixed_cross_modal_correct'), 2)})"
                 if "mixed_cross_modal_clusters" in r else "–")
        lines.append(f"| {name(e)} | {100 * r['rank1']:.1f} | {100 * r['mAP']:.1f} | {_num(r.get('ari_visible'))} | "
                     f"{_num(r.get('ari_infrared'))} | {r.get('clusters_visible', '–')} / "
                     f"{r.get('clusters_infrared', '–')}"
                     f" | {mixed} | {_num(r['reachable_pair_precision'])} | {_num(r['chance_pair_precision'])} |")
    for key, title in (("pair_precision", "Pair precision"),
                       ("ari_transferred", "ARI of the transferred visible labels")):
        lines += ["", f"#### {title} of each matching", "",
                  "| assignment | n_memories | cost summed over | " + " | ".join(name(e) for e in epochs) + " |",
                  "|---|---|---|" + "---|" * len(epochs)]
        for assignment, n, over in VARIANTS:
            cells = []
            for e in epochs:
                found = [v for v in rows[e]["variants"] if (v["assignment"], v["n_memories"], v["cost_sum_over"])
                         == (assignment, n, over)]
                best = max((v[key] for v in rows[e]["variants"]), default=None)
                value = found[0].get(key) if found else None
                cell = _num(value)
                cells.append(f"**{cell}**" if value is not None and value == best else cell)
            lines.append(f"| {assignment} | {n} | {over} | " + " | ".join(cells) + " |")
    lines += ["", "Bold: the best variant of a model. Pair precision counts a pair right when the majority "
              "identities of its two clusters agree; it cannot exceed the reachable pair precision."]
    return "\n".join(lines) + "\n"


def replace_section(text: str, section: str, start: str = MARK_START, end: str = MARK_END) -> str:
    """`text` with what lies between the markers replaced by `section` (appended with markers if absent)."""
    block = f"{start}\n{section}{end}"
    if start in text and end in text:
        return text[:text.index(start)] + block + text[text.index(end) + len(end):]
    return text.rstrip("\n") + "\n\n" + block + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshots", type=int, nargs="+", default=[2, 4, 8, 16],
                        help="global CMC epochs (1-based) after which the model is studied; 0 = start weights")
    parser.add_argument("--work", default="runs/matching_study", help="CMC run and snapshots (reused when finished)")
    parser.add_argument("--out", default="docs/experiments/matching-and-clusters.md", help="Markdown file whose matching-study section is replaced")
    parser.add_argument("--json", default=None, help="every number (default <work>/matching_study.json)")
    add_setup_arguments(parser)
    args = parser.parse_args()
    given = {o.split("=", 1)[0] for o in args.overrides}
    args.overrides = [o for o in SCHEDULE if o.split("=", 1)[0] not in given] + list(args.overrides)
    work = Path(args.work)
    command = command_line()
    print(command, flush=True)

    t0 = time.time()
    setup = prepare_setup(args)
    total = setup.config(work / "cmc").cmc
    if max(args.snapshots) > total.phase1_epochs + total.phase2_epochs or min(args.snapshots) < 0:
        parser.error(f"--snapshots must lie in 0..{total.phase1_epochs + total.phase2_epochs} (the CMC epochs)")
    cfg, paths = train_snapshots(setup, work, sorted(set(args.snapshots)))
    rows = study(cfg, paths)
    info = {"command": command, "setup": setup.describe(), "protocol": next(iter(rows.values()))["protocol"],
            "minutes": (time.time() - t0) / 60}
    table = markdown(rows, info)
    write_json(Path(args.json or work / "matching_study.json"),
               {"command": command, "setup": info["setup"], "snapshots": {str(e): r for e, r in rows.items()}})
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(replace_section(out.read_text(encoding="utf-8") if out.exists() else "", table), encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
