"""Oracle-label experiment: what SCA reaches when a given share of its cross-modal pairs are right.

    python studies/oracle_labels.py [--precisions 1 0.75 0.5 0.25] [--seeds 0 1 2] [--cmc-seeds 0]
        [--curves cmc identity] [--identity-precisions 1] [--no-reached] [--no-mmlm]
        [--variant-set KEY=VALUE ...] [--work runs/oracle_labels] [--png docs/images/oracle_curve.png]
        [--json FILE] [--md FILE] [--preset demo] [--dataset NAME --data-root DIR] [KEY=VALUE ...]

Per CMC seed, the CMC stage runs once (stages cmc,mmlm, so the run also records the pair precision
MMLM reaches on that CMC model, mmlm/summary.json). Every point then resumes a copy of that run into
MMLM + SCA with SCA seed s (`seed=s`), so all points start from the same CMC model:

- curve `cmc`: the CMC model's per-modality clusters, paired from the TRUE identities so that exactly
  a share p of the visible clusters get an infrared cluster of their own identity
  (`mmlm.oracle_precision=p mmlm.oracle_clusters=cmc`), for every --precisions p and for the
  precision MMLM reached;
- curve `identity`: the same with the true identities as per-modality clusters
  (`mmlm.oracle_clusters=identity`); at p = 1 this is SCA trained on the true labels: the supervised
  reference;
- `mmlm`: MMLM's own matching (the method itself), one point per SCA seed.

References: the start weights (evaluated once), CMC only (the CMC run's final evaluation), the
supervised run (identity clusters at p = 1) and the chance Rank-1 of the headline protocol. Outputs:
a JSON of every run and point (--json, default <work>/oracle_labels.json), a Markdown table (printed,
and written to --md when given) and Rank-1 / mAP against the achieved pair precision with mean ± std
over seeds (--png). Finished run folders in --work are reused (only with the same settings), so an
interrupted experiment continues where it stopped; variants keep only checkpoints/final.pt.
The oracle needs the training identities: data without them is refused (this is a diagnosis, not the
unsupervised method).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from stage_runs import (Setup, add_setup_arguments, chance_rank1, command_footer, command_line, evaluate_start,
                        final_metrics, mean_std, mmlm_summary, prepare_setup, report_failures, resume_variant,
                        train_or_reuse)
from vireid.errors import VireidError
from vireid.fileio import write_json

CURVES = {"cmc": "oracle pairs of the CMC model's clusters", "identity": "oracle pairs of identity clusters",
          "mmlm": "MMLM's own pairs (the method)"}
REACHED = "MMLM's"  # the requested precision of the point at the precision MMLM reached
STYLE = {"cmc": ("#4a6fa5", "o", "-"), "identity": ("#e39b3b", "s", "-"), "mmlm": ("#c0392b", "*", "none")}
SUMMARY_KEYS = ("pair_precision", "ari_transferred", "ari_all", "clusters_visible", "clusters_infrared")


@dataclass
class Job:
    """One MMLM + SCA run on a copy of a CMC run."""

    curve: str  # cmc | identity | mmlm
    requested: float | str | None  # p, REACHED, or None for MMLM's own pairs
    precision: float | None  # the oracle_precision set (None: MMLM)
    cmc_seed: int
    seed: int
    folder: Path
    extra: tuple[str, ...] = ()  # --variant-set: overrides of the SCA runs only

    def overrides(self) -> list[str]:
        stages = [f"seed={self.seed}", "stages=[cmc,mmlm,sca]", *self.extra]
        if self.curve == "mmlm":
            return stages + ["mmlm.oracle_precision=-1"]
        return stages + [f"mmlm.oracle_precision={self.precision!r}", f"mmlm.oracle_clusters={self.curve}"]


def cmc_run(setup: Setup, work: Path, cmc_seed: int) -> Path:
    """The CMC stage and MMLM (for its pair precision) of one CMC seed."""
    return train_or_reuse(setup.config(work / f"cmc-seed{cmc_seed}", [f"seed={cmc_seed}", "stages=[cmc,mmlm]"]))


def jobs_of(cmc_seed: int, reached: float | None, args: argparse.Namespace, work: Path) -> list[Job]:
    """Every run on one CMC model, SCA seed by SCA seed (a partial experiment already has whole curves)."""
    jobs = []
    folder = work / f"sca-cmc{cmc_seed}"
    extra = tuple(args.variant_set)
    tag = "".join(f"-{re.sub(r'[^A-Za-z0-9.]+', '_', o)}" for o in extra)  # variants with other settings apart
    for seed in args.seeds:
        for curve in args.curves:
            wanted = args.identity_precisions if curve == "identity" and args.identity_precisions else args.precisions
            targets: list[tuple[float | str, float]] = [(p, p) for p in wanted]
            if curve == "cmc" and reached is not None and args.reached:
                targets.append((REACHED, reached))
            jobs += [Job(curve, requested, p, cmc_seed, seed, folder / f"{curve}-p{p:.3f}-seed{seed}{tag}", extra)
                     for requested, p in targets]
        if args.mmlm:
            jobs.append(Job("mmlm", None, None, cmc_seed, seed, folder / f"mmlm-seed{seed}{tag}", extra))
    return jobs


def run_job(job: Job, setup: Setup, base: Path, keep_checkpoints: bool) -> dict:
    """Run (or reuse) one job; its final metrics and the matching's summary."""
    record = {"curve": job.curve, "requested": job.requested, "cmc_seed": job.cmc_seed, "seed": job.seed,
              "run": str(job.folder)}
    try:
        run = resume_variant(base, setup.config(job.folder, job.overrides()), keep_checkpoints)
    except VireidError as err:
        print(f"FAILED {job.folder}: {err}", file=sys.stderr, flush=True)
        return {**record, "error": str(err)}
    protocol, final = final_metrics(run)
    summary = mmlm_summary(run)
    return {**record, "protocol": protocol, "rank1": final["rank1"], "mAP": final["mAP"],
            **{k: summary[k] for k in SUMMARY_KEYS if k in summary}}


def points_of(runs: list[dict]) -> list[dict]:
    """Mean ± std over seeds (and CMC seeds) per (curve, requested precision)."""
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        if "error" not in run:
            groups.setdefault((run["curve"], run["requested"]), []).append(run)
    points = []
    for (curve, requested), members in groups.items():
        point = {"curve": curve, "requested": requested, "runs": len(members)}
        for key in ("pair_precision", "rank1", "mAP"):
            mean, std, _ = mean_std([m.get(key, np.nan) for m in members])
            point[key], point[f"{key}_std"] = mean, std
        points.append(point)
    order = {c: i for i, c in enumerate(CURVES)}
    return sorted(points, key=lambda p: (order[p["curve"]], -np.nan_to_num(p["pair_precision"], nan=-1.0)))


def references(start: dict, cmc_runs: dict[int, Path], points: list[dict], chance: float) -> dict:
    """Start weights, CMC only (mean ± std over CMC seeds), supervised (identity clusters, p = 1), chance."""
    cmc = [final_metrics(run)[1] for run in cmc_runs.values()]
    reached = [mmlm_summary(run).get("pair_precision", np.nan) for run in cmc_runs.values()]
    refs = {"start": {"rank1": start["rank1"], "mAP": start["mAP"], "runs": 1},
            "cmc_only": {"runs": len(cmc)},
            "mmlm_reached_pair_precision": dict(zip(map(str, cmc_runs), reached)),
            "chance_rank1": chance}
    for key in ("rank1", "mAP"):
        refs["cmc_only"][key], refs["cmc_only"][f"{key}_std"], _ = mean_std([m[key] for m in cmc])
    supervised = [p for p in points if p["curve"] == "identity" and p["requested"] == 1.0]
    refs["supervised"] = supervised[0] if supervised else None
    return refs


# ---------------------------------------------------------------------------- outputs
def _cell(mean: float, std: float, scale: float = 100.0, digits: int = 1) -> str:
    if mean != mean:
        return "–"
    return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}"


def markdown(points: list[dict], refs: dict, info: dict) -> str:
    """The table of every point and reference, headed by the command and the setup."""
    chance = refs["chance_rank1"]
    lines = ["## Oracle-label experiment", "",
             f"`{info['command']}`", "",
             f"{info['setup']}; CMC seeds {', '.join(map(str, info['cmc_seeds']))}, SCA seeds "
             f"{', '.join(map(str, info['seeds']))}; mean ± std over seeds; protocol {info['protocol']}; chance "
             f"Rank-1 {100 * chance:.1f}%; {info['done']} of {info['total']} runs finished"
             f"{'' if info['done'] == info['total'] else ' (PARTIAL)'}; {info['minutes']:.0f} min.", "",
             "| shared labels | per-modality clusters | requested pair precision | achieved pair precision | runs "
             "| Rank-1 (%) | mAP (%) |", "|---|---|---|---|---|---|---|"]
    start, cmc = refs["start"], refs["cmc_only"]
    lines.append(f"| start weights (no training) | – | – | – | 1 | {100 * start['rank1']:.1f} | "
                 f"{100 * start['mAP']:.1f} |")
    lines.append(f"| CMC only | – | – | – | {cmc['runs']} | {_cell(cmc['rank1'], cmc['rank1_std'])} | "
                 f"{_cell(cmc['mAP'], cmc['mAP_std'])} |")
    for p in points:
        labels = {"cmc": "oracle", "identity": "oracle", "mmlm": "MMLM (the method)"}[p["curve"]]
        if p["curve"] == "identity" and p["requested"] == 1.0:
            labels = "oracle = true labels (supervised SCA)"
        clusters = "identities" if p["curve"] == "identity" else "CMC model's"
        requested = "–" if p["requested"] is None else (
            f"{REACHED} ({p['pair_precision']:.3f})" if p["requested"] == REACHED else f"{p['requested']:.2f}")
        achieved = _cell(p["pair_precision"], p["pair_precision_std"], 1, 3)
        lines.append(f"| {labels} | {clusters} | {requested} | {achieved} "
                     f"| {p['runs']} | {_cell(p['rank1'], p['rank1_std'])} | {_cell(p['mAP'], p['mAP_std'])} |")
    lines += ["", "The achieved pair precision of the CMC model's clusters stays below the requested one when too "
              "few visible clusters have an infrared cluster whose majority identity is theirs (the most any "
              "pairing can reach); with identity clusters it is the requested one, rounded to whole clusters."]
    return "\n".join(lines) + "\n"


def plot(points: list[dict], refs: dict, info: dict, path: Path) -> Path:
    """Rank-1 and mAP against the achieved pair precision, one line per curve, with the references."""
    fig = Figure(figsize=(14, 4.6), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, (key, name) in zip(axes, (("rank1", "Rank-1"), ("mAP", "mAP"))):
        for curve in CURVES:
            own = sorted((p for p in points if p["curve"] == curve), key=lambda p: p["pair_precision"])
            if not own:
                continue
            colour, marker, line = STYLE[curve]
            ax.errorbar([p["pair_precision"] for p in own], [100 * p[key] for p in own],
                        yerr=[100 * p[f"{key}_std"] for p in own], color=colour, marker=marker, linestyle=line,
                        markersize=11 if marker == "*" else 6, capsize=3, label=CURVES[curve])
        _reference_lines(ax, key, refs)
        ax.set_xlim(-0.03, 1.03)
        ax.set_xlabel("achieved pair precision (share of visible clusters paired with their identity)", fontsize=9)
        ax.set_ylabel(f"final {name} (%, {info['protocol']})")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=8)
    fig.suptitle(f"SCA on shared labels of controlled pair precision ({info['setup_short']}; mean ± std over "
                 f"{len(info['seeds'])} SCA seed(s) × {len(info['cmc_seeds'])} CMC model(s)"
                 + ("" if info["done"] == info["total"] else f"; PARTIAL {info['done']}/{info['total']}") + ")",
                 fontsize=10)
    command_footer(fig, info["command"])
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def _reference_lines(ax, key: str, refs: dict) -> None:
    cmc = refs["cmc_only"]
    ax.axhline(100 * refs["start"][key], color="0.45", linestyle=":", label="start weights")
    ax.axhline(100 * cmc[key], color="#2e8b57", linestyle="--", label="CMC only")
    if cmc["runs"] > 1:
        ax.axhspan(100 * (cmc[key] - cmc[f"{key}_std"]), 100 * (cmc[key] + cmc[f"{key}_std"]), color="#2e8b57",
                   alpha=0.12)
    if refs["supervised"] is not None:
        ax.axhline(100 * refs["supervised"][key], color="#8e44ad", linestyle="-.",
                   label="supervised (true labels = identity clusters, p = 1)")
    reached = [v for v in refs["mmlm_reached_pair_precision"].values() if v == v]
    if reached:
        ax.axvline(float(np.mean(reached)), color="#c0392b", linestyle=":", linewidth=1, label="precision MMLM reached")
    if key == "rank1" and refs["chance_rank1"] == refs["chance_rank1"]:
        ax.axhline(100 * refs["chance_rank1"], color="black", linestyle=(0, (1, 3)), label="chance Rank-1")


def write_outputs(runs: list[dict], refs_in: tuple, info: dict, args: argparse.Namespace) -> str:
    """JSON, PNG and Markdown of the runs finished so far; returns the Markdown."""
    start, cmc_runs, chance = refs_in
    points = points_of(runs)
    refs = references(start, cmc_runs, points, chance)
    table = markdown(points, refs, info)
    write_json(Path(args.json), {"command": info["command"], "setup": info["setup"], "protocol": info["protocol"],
                                 "done": info["done"], "total": info["total"], "references": refs,
                                 "points": points, "runs": runs})
    plot(points, refs, info, Path(args.png))
    if args.md:
        Path(args.md).parent.mkdir(parents=True, exist_ok=True)
        Path(args.md).write_text(table, encoding="utf-8")
    return table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precisions", type=float, nargs="+", default=[1.0, 0.75, 0.5, 0.25])
    parser.add_argument("--identity-precisions", type=float, nargs="+", default=None,
                        help="precisions of the identity curve (default: --precisions); 1 alone = the supervised run")
    parser.add_argument("--variant-set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="overrides of the SCA runs only (e.g. sca.lr=0.01): the CMC runs stay shared")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="SCA seeds per point")
    parser.add_argument("--cmc-seeds", type=int, nargs="+", default=[0], help="one CMC run per seed")
    parser.add_argument("--curves", nargs="+", choices=("cmc", "identity"), default=["cmc", "identity"])
    parser.add_argument("--no-reached", dest="reached", action="store_false",
                        help="leave out the oracle point at the precision MMLM reached")
    parser.add_argument("--no-mmlm", dest="mmlm", action="store_false", help="leave out MMLM's own pairs")
    parser.add_argument("--work", default="runs/oracle_labels", help="run folders (reused when finished)")
    parser.add_argument("--json", default=None, help="every run and point (default <work>/oracle_labels.json)")
    parser.add_argument("--png", default="docs/images/oracle_curve.png")
    parser.add_argument("--md", default=None, help="also write the Markdown table here")
    parser.add_argument("--keep-checkpoints", action="store_true", help="keep every variant's cmc.pt and last.pt")
    add_setup_arguments(parser)
    return parser


def main() -> int:
    parser = build_parser()
    args = parser.parse_args()
    bad = [p for p in args.precisions if not 0.0 <= p <= 1.0]
    if bad:
        parser.error(f"--precisions must lie in [0, 1], got {bad}")
    work = Path(args.work)
    args.json = args.json or str(work / "oracle_labels.json")
    command = command_line()
    print(command, flush=True)

    t0 = time.time()
    setup = prepare_setup(args)
    start = evaluate_start(setup, work / "start_weights.json")
    info = {"command": command, "setup": setup.describe(), "setup_short": f"preset {setup.preset}, {setup.dataset}",
            "protocol": start["protocol"], "seeds": args.seeds, "cmc_seeds": args.cmc_seeds}
    chance = chance_rank1(setup, start["protocol"])
    cmc_runs = {c: cmc_run(setup, work, c) for c in args.cmc_seeds}
    jobs = [job for c, base in cmc_runs.items()
            for job in jobs_of(c, mmlm_summary(base).get("pair_precision"), args, work)]
    runs: list[dict] = []
    table = ""
    for i, job in enumerate(jobs):
        runs.append(run_job(job, setup, cmc_runs[job.cmc_seed], args.keep_checkpoints))
        print(f"[{i + 1}/{len(jobs)}] {job.folder.name} (CMC seed {job.cmc_seed}) after "
              f"{(time.time() - t0) / 60:.1f} min: {runs[-1]}", flush=True)
        if i + 1 == len(jobs) or jobs[i + 1].seed != job.seed:  # a seed's points are complete
            info.update(done=sum("error" not in r for r in runs), total=len(jobs), minutes=(time.time() - t0) / 60)
            table = write_outputs(runs, (start, cmc_runs, chance), info, args)
    print(table)
    return report_failures(runs)


if __name__ == "__main__":
    sys.exit(main())
