"""Budget curve: does MMM's gain over CMC only show as CMC trains longer, and what creates the
cross-modal signal MMLM needs?

    python studies/budget_curve.py [--budgets 8 16 32 64] [--seeds 0 1 2] [--largest-seeds 0 1]
        [--paper-lr-seeds 0 1] [--paper-lr 3.5e-4] [--oracle-budgets 8] [--work runs/budget_curve]
        [--png FILE] [--json FILE] [--md FILE] [--out PAGE] [--preset budget] [--dataset NAME --data-root DIR]
        [-- KEY=VALUE ...]

The preset's learning rate is constant over every budget, so the run of b CMC epochs is the first b
epochs of a longer one. Per CMC learning rate and seed, CMC is trained ONCE up to the largest budget
plus D epochs, where D = ceil(sca.epochs x sca.iterations / cmc.iterations) is SCA's iteration count
in CMC epochs, and the full training state is kept after every epoch the curve needs. Then, per
budget b, branched off those snapshots (stage_runs.resume_variant, the same reuse rules):

- `cmc-eB`: CMC only after b epochs, evaluated, and MMLM's matching on it (pair precision with its
  chance and reachable levels; stages cmc,mmlm);
- `mmm-eB`: full MMM, i.e. MMLM + SCA on that CMC model;
- CMC-continued: the `cmc-e(B+D)` snapshot, CMC trained on for as many more iterations as SCA
  uses (each phase-2 iteration takes two optimiser steps, so the control gets at least SCA's);
- `oracle-eB` (--oracle-budgets): SCA on the true identities from that CMC model, the supervised
  ceiling (`mmlm.oracle_precision=1 mmlm.oracle_clusters=identity`): is the scale one where SCA can pay?

Seeds not in --largest-seeds stop at the second-largest budget. The paper's CMC learning rate
(--paper-lr, default 3.5e-4) is run for --paper-lr-seeds at the largest budget only. Every CMC epoch's
clustering round is recorded (the round at the start of epoch e+1 describes the model after e epochs,
so epoch 0 is the start weights): per-modality ARI, the infrared -> visible nearest-neighbour accuracy
on the training set, the mixed clusters holding both modalities, the share of them that are one
person, and the share of samples inside them (associate rate).

Outputs: JSON (--json, default <work>/budget_curve.json) with every run, epoch record, timing and the
verdict; a Markdown table (printed, written to --md, and between the `<!-- budget-curve:start -->` and
`<!-- budget-curve:end -->` markers of --out); the figure (--png): Rank-1 of CMC only,
CMC-continued and full MMM against the budget with per-seed dots, MMLM's pair precision with its
chance and reachable levels, and the per-epoch cross-modal signal. Finished folders in --work are
reused (only with the same settings) and an interrupted one resumes, so the command continues where
it stopped; a larger budget trains a finished CMC line on from its last state (the shorter run is
kept as `cmc-uptoNNN`), and a longer line serves a smaller plan; two commands with disjoint --seeds may share a --work folder (give each its own --json,
--png) and a last one with every seed collects them. The curve needs the training identities.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from matplotlib.figure import Figure

from matching_study import replace_section
from stage_runs import (Setup, add_setup_arguments, chance_rank1, command_footer, command_line, evaluate_start,
                        final_metrics, finished, mean_std, mmlm_summary, prepare_setup, report_failures, resume_variant,
                        settings_changed, train_or_reuse)
from vireid.engine.hooks import EpochEnd, Hook
from vireid.errors import VireidError
from vireid.fileio import write_json

# The budget preset's synthetic set (its header): generated in the cache when no --data-root is given.
BUDGET_DATA = ("budget-data", dict(layout="sysu", ids=260, test_fraction=0.385, height=64, width=32, seed=0))
EPOCH_KEYS = ("ari_visible", "ari_infrared", "nn_infrared_to_visible", "clusters_visible", "clusters_infrared",
              "clusters_mixed", "mixed_cross_modal_clusters", "mixed_cross_modal_correct", "mixed_associate_rate")
MATCH_KEYS = ("pair_precision", "pair_precision_chance", "pair_precision_reachable", "ari_transferred",
              "clusters_visible", "clusters_infrared")
MARK_START, MARK_END = "<!-- budget-curve:start -->", "<!-- budget-curve:end -->"
KINDS = {"cmc": "CMC only", "continued": "CMC-continued", "mmm": "full MMM", "oracle": "SCA on true labels"}
STYLE = {"cmc": ("#2e8b57", "o"), "continued": ("#7f8c8d", "s"), "mmm": ("#c0392b", "D"), "oracle": ("#8e44ad", "*")}


class BudgetError(VireidError):
    """The curve cannot be built from its run folders."""


# ---------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class Line:
    """One CMC training run (learning rate, seed) and the budgets branched off it."""

    lr: float
    seed: int
    budgets: tuple[int, ...]
    delta: int  # SCA's iterations in CMC epochs

    @property
    def name(self) -> str:
        return f"lr{self.lr:g}-seed{self.seed}"

    @property
    def top(self) -> int:
        return max(self.budgets) + self.delta

    @property
    def snapshots(self) -> list[int]:
        return sorted({e for b in self.budgets for e in (b, b + self.delta)})


def sca_delta(cfg) -> int:
    """SCA's iterations expressed in CMC epochs (rounded up): the CMC-continued control's extra epochs."""
    return math.ceil(cfg.sca.epochs * sca_iterations(cfg) / cfg.cmc.iterations)


def sca_iterations(cfg) -> int:
    if cfg.sca.iterations <= 0:
        raise BudgetError("the budget curve needs a fixed sca.iterations (> 0) to size the CMC-continued control")
    return cfg.sca.iterations


def plan_lines(args: argparse.Namespace, delta: int) -> list[Line]:
    """The CMC runs: every seed at the learning rate of the preset, the paper's at the largest budget."""
    budgets = sorted(set(args.budgets))
    lines = []
    for seed in args.seeds:
        own = budgets if (args.largest_seeds is None or seed in args.largest_seeds or len(budgets) == 1) else budgets[:-1]
        lines.append(Line(args.lr, seed, tuple(own), delta))
    lines += [Line(args.paper_lr, seed, (budgets[-1],), delta) for seed in args.paper_lr_seeds
              if args.paper_lr != args.lr]
    return lines


def schedule(epochs: int, phase1: int) -> list[str]:
    """The overrides for `epochs` CMC epochs: phase 1 first (at most `phase1`), the rest phase 2."""
    first = min(phase1, epochs)
    return [f"cmc.phase1_epochs={first}", f"cmc.phase2_epochs={epochs - first}"]


# ---------------------------------------------------------------------------- CMC runs and snapshots
class KeepState(Hook):
    """Copy the full training state (`checkpoints/last.pt`, just written) after the chosen CMC epochs
    (1-based) to `folder/cmc_epochNNN.pt`, so a variant can resume from there."""

    def __init__(self, epochs: list[int], checkpoints: Path, folder: Path) -> None:
        self.epochs, self.checkpoints, self.folder = set(epochs), checkpoints, folder

    def after_epoch(self, end: EpochEnd) -> None:
        if end.stage == "cmc" and end.epoch + 1 in self.epochs:
            target = snapshot_path(self.folder, end.epoch + 1)
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".part")
            shutil.copy2(self.checkpoints / "last.pt", partial)
            partial.replace(target)


def snapshot_path(folder: Path, epoch: int) -> Path:
    return folder / f"cmc_epoch{epoch:03d}.pt"


def train_line(setup: Setup, work: Path, line: Line, phase1: int) -> Path:
    """Train (or reuse, or resume, or extend) the line's CMC run; its folder. The snapshots land in
    work/<line>/snapshots.

    A finished run shorter than the line now asks for (a larger budget, or a seed added to
    --largest-seeds) is extended, not retrained: it is set aside as `cmc-uptoNNN` and CMC trains on
    from its last state into `cmc`, which at a constant learning rate is the longer run itself."""
    folder = work / line.name
    cfg = setup.config(folder / "cmc", [f"seed={line.seed}", f"cmc.lr={line.lr!r}", "stages=[cmc]",
                                        *schedule(line.top, phase1)])
    run, snaps = Path(cfg.output), folder / "snapshots"
    if finished(run) and cmc_epochs(run) < line.top:
        set_aside(run, cfg, snaps)
    elif finished(run) and cmc_epochs(run) > line.top:
        check_only_epochs_differ(run, cfg)
        if all(snapshot_path(snaps, e).is_file() for e in line.snapshots):
            return run  # a longer line holds every state this plan needs
    shorter = shorter_runs(folder)
    missing = [e for e in line.snapshots if not snapshot_path(snaps, e).is_file()]
    if missing and finished(run):
        raise BudgetError(f"{cfg.output} is finished but lacks the states after CMC epochs {missing}; delete "
                          f"{folder} or give another --work folder")
    keep = KeepState(line.snapshots, run / "checkpoints", snaps)
    if shorter and not finished(run):  # an extension, begun now or interrupted before
        resume_variant(shorter[-1], cfg, keep_checkpoints=True, hooks=[keep],
                       checkpoint=snapshot_path(snaps, cmc_epochs(shorter[-1])))
    else:
        train_or_reuse(cfg, hooks=[keep])
    lost = [e for e in line.snapshots if not snapshot_path(snaps, e).is_file()]
    if lost:  # the run stopped between a checkpoint and its copy
        raise BudgetError(f"the states after CMC epochs {lost} are missing from {snaps}; delete {folder} and run again")
    return Path(cfg.output)


def cmc_epochs(run: Path) -> int:
    """How many CMC epochs the run in `run` is set to train (its config.yaml)."""
    saved = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8")) or {}
    return int(saved["cmc"]["phase1_epochs"]) + int(saved["cmc"]["phase2_epochs"])


def shorter_runs(folder: Path) -> list[Path]:
    """The finished runs a line's `cmc` was extended from, shortest first."""
    return sorted(folder.glob("cmc-upto[0-9][0-9][0-9]"))


def check_only_epochs_differ(run: Path, cfg) -> None:
    """A line trained for another number of CMC epochs serves this plan only if nothing else differs."""
    detail = settings_changed(run, cfg, ignore=("cmc.phase1_epochs", "cmc.phase2_epochs"))
    if detail:
        raise BudgetError(f"{run} holds a finished run with other settings ({detail}); delete it or give "
                          "another --work folder")


def set_aside(run: Path, cfg, snaps: Path) -> Path:
    """Move a finished, shorter CMC run out of the way of its extension (`cmc-uptoNNN`), after checking
    that only the number of CMC epochs differs and that its last state was kept."""
    check_only_epochs_differ(run, cfg)
    epochs = cmc_epochs(run)
    if not snapshot_path(snaps, epochs).is_file():
        raise BudgetError(f"{run} trained {epochs} CMC epochs but {snapshot_path(snaps, epochs)} is missing, so it "
                          f"cannot be extended; delete {run.parent} or give another --work folder")
    target = run.with_name(f"cmc-upto{epochs:03d}")
    run.rename(target)
    longer = cfg.cmc.phase1_epochs + cfg.cmc.phase2_epochs
    print(f"extending {run} from {epochs} to {longer} CMC epochs (the shorter run is kept as {target.name})",
          file=sys.stderr)
    return target


def epoch_records(run: Path) -> list[dict]:
    """The CMC epochs' clustering rounds of a run, in order, with the keys the curve reports."""
    records = []
    for raw in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        rec = json.loads(raw) if raw.strip() else {}
        if rec.get("event") == "epoch" and rec.get("stage") == "cmc":
            records.append({"epoch": int(rec["epoch"]), "phase": rec.get("phase"),
                            "seconds": rec.get("seconds_cluster", 0.0) + rec.get("seconds_train", 0.0),
                            **{k: rec[k] for k in EPOCH_KEYS if k in rec}})
    return records


# ---------------------------------------------------------------------------- branches
@dataclass(frozen=True)
class Branch:
    """One run branched off a line's snapshot after `epochs` CMC epochs."""

    line: Line
    kind: str  # cmc | mmm | oracle
    epochs: int

    def folder(self, work: Path) -> Path:
        return work / self.line.name / f"{self.kind}-e{self.epochs:03d}"

    def overrides(self, phase1: int) -> list[str]:
        stages = "[cmc,mmlm]" if self.kind == "cmc" else "[cmc,mmlm,sca]"
        extra = ["mmlm.oracle_precision=1.0", "mmlm.oracle_clusters=identity"] if self.kind == "oracle" else []
        return [f"seed={self.line.seed}", f"cmc.lr={self.line.lr!r}", f"stages={stages}",
                *schedule(self.epochs, phase1), *extra]


def branches_of(line: Line, oracle_budgets: list[int]) -> list[Branch]:
    """A line's runs, smallest budget first; CMC-only runs before the SCA runs that resume them."""
    out: list[Branch] = []
    for b in line.budgets:
        out += [x for x in (Branch(line, "cmc", b), Branch(line, "cmc", b + line.delta)) if x not in out]
        out.append(Branch(line, "mmm", b))
        if b in oracle_budgets:
            out.append(Branch(line, "oracle", b))
    return out


def run_branch(branch: Branch, setup: Setup, work: Path, phase1: int) -> dict:
    """Run (or reuse) one branch; its record (final metrics and MMLM's matching summary)."""
    folder = branch.folder(work)
    record = {"lr": branch.line.lr, "seed": branch.line.seed, "kind": branch.kind, "epochs": branch.epochs,
              "run": str(folder)}
    cfg = setup.config(folder, branch.overrides(phase1))
    try:
        if branch.kind == "cmc":
            snapshot = snapshot_path(work / branch.line.name / "snapshots", branch.epochs)
            resume_variant(work / branch.line.name / "cmc", cfg, keep_checkpoints=True, checkpoint=snapshot)
            for name in (snapshot.name, "last.pt"):  # cmc.pt stays: the SCA branches resume it
                (folder / "checkpoints" / name).unlink(missing_ok=True)
        else:
            base = Branch(branch.line, "cmc", branch.epochs).folder(work)
            resume_variant(base, cfg)
    except VireidError as err:
        print(f"FAILED {folder}: {err}", file=sys.stderr, flush=True)
        return {**record, "error": str(err)}
    protocol, final = final_metrics(folder)
    summary = mmlm_summary(folder)
    return {**record, "protocol": protocol, "rank1": final["rank1"], "mAP": final["mAP"],
            **{k: summary[k] for k in MATCH_KEYS if k in summary}, "minutes": branch_minutes(folder)}


def branch_minutes(folder: Path) -> float:
    """How long a finished branch took: from its config.yaml (written when it starts) to its
    final_metrics.json (written last); read from the folder, so reused runs keep their time."""
    return ((folder / "final_metrics.json").stat().st_mtime - (folder / "config.yaml").stat().st_mtime) / 60


# ---------------------------------------------------------------------------- the numbers
def points_of(runs: list[dict], lines: list[Line]) -> list[dict]:
    """Per (learning rate, budget): CMC only, CMC-continued, full MMM and the oracle, mean ± std over
    seeds; MMLM's matching on CMC only; and the paired per-seed differences of full MMM."""
    by = {(r["lr"], r["seed"], r["kind"], r["epochs"]): r for r in runs if "error" not in r}
    points = []
    for lr in sorted({line.lr for line in lines}):
        budgets = sorted({b for line in lines if line.lr == lr for b in line.budgets})
        for b in budgets:
            seeds = [line.seed for line in lines if line.lr == lr and b in line.budgets]
            delta = next(line.delta for line in lines if line.lr == lr)
            per_seed = {s: {"cmc": by.get((lr, s, "cmc", b)), "continued": by.get((lr, s, "cmc", b + delta)),
                            "mmm": by.get((lr, s, "mmm", b)), "oracle": by.get((lr, s, "oracle", b))} for s in seeds}
            point = {"lr": lr, "budget": b, "delta": delta, "seeds": seeds}
            for kind in KINDS:
                for key in ("rank1", "mAP"):
                    values = [r[key] for r in (per_seed[s][kind] for s in seeds) if r is not None]
                    point[f"{kind}_{key}"], point[f"{kind}_{key}_std"], point[f"{kind}_runs"] = mean_std(values)
                    point[f"{kind}_{key}_per_seed"] = [None if per_seed[s][kind] is None else per_seed[s][kind][key]
                                                       for s in seeds]
            for key in MATCH_KEYS:
                point[key], point[f"{key}_std"], _ = mean_std([per_seed[s]["cmc"].get(key, math.nan) for s in seeds
                                                                if per_seed[s]["cmc"] is not None])
            for control in ("cmc", "continued"):
                diffs = [per_seed[s]["mmm"]["rank1"] - per_seed[s][control]["rank1"] for s in seeds
                         if per_seed[s]["mmm"] is not None and per_seed[s][control] is not None]
                point[f"gain_over_{control}"], point[f"gain_over_{control}_std"], _ = mean_std(diffs)
                point[f"gain_over_{control}_per_seed"] = diffs
            points.append(point)
    return points


def beats(point: dict, control: str) -> bool:
    """Full MMM above `control` beyond the seed spread: every seed's paired gain positive and the mean
    gain larger than the gains' standard deviation (two seeds at least)."""
    gains = point[f"gain_over_{control}_per_seed"]
    return len(gains) >= 2 and min(gains) > 0 and point[f"gain_over_{control}"] > point[f"gain_over_{control}_std"]


def verdict(points: list[dict], lr: float) -> dict:
    """The smallest budget at the preset's learning rate where full MMM beats CMC only and CMC-continued
    beyond the seed spread with a pair precision of at least 0.5; else the trend of the pair precision
    against log2(budget) and the budget it projects for 0.5 (None when it does not rise)."""
    own = [p for p in points if p["lr"] == lr]
    for p in own:
        if beats(p, "cmc") and beats(p, "continued") and p["pair_precision"] >= 0.5:
            return {"found": True, "budget": p["budget"]}
    usable = [(p["budget"], p["pair_precision"]) for p in own if p["pair_precision"] == p["pair_precision"]]
    out: dict = {"found": False, "budget": None, "slope_per_doubling": None, "projected_budget": None}
    if len(usable) >= 2:
        x = np.log2([b for b, _ in usable])
        y = np.array([v for _, v in usable])
        slope, intercept = np.polyfit(x, y, 1)
        out["slope_per_doubling"] = float(slope)
        if slope > 0:
            out["projected_budget"] = float(2.0 ** min((0.5 - intercept) / slope, 1000.0))
    return out


# ---------------------------------------------------------------------------- outputs
def _cell(mean: float, std: float, runs: int | None = None, scale: float = 100.0, digits: int = 1) -> str:
    if mean != mean:
        return "–"
    text = f"{scale * mean:.{digits}f}"
    return text + (f" ± {scale * std:.{digits}f}" if runs is None or runs > 1 else "")


def _epoch_at(records: list[dict], epoch: int) -> dict:
    """The clustering round that describes the model after `epoch` CMC epochs ({} when not recorded)."""
    return next((r for r in records if r["epoch"] == epoch), {})


def markdown(points: list[dict], epochs: dict[str, list[dict]], lines: list[Line], info: dict) -> str:
    """The command, the setup, one row per (learning rate, budget) and the per-seed Rank-1."""
    out = [f"`{info['command']}`", "",
           f"{info['setup']}; CMC-continued = CMC trained on for D = {info['delta']} more epochs (SCA's "
           f"{info['sca_iterations']} iterations); protocol {info['protocol']}; chance Rank-1 "
           f"{100 * info['chance']:.1f}%; start weights Rank-1 {100 * info['start']['rank1']:.1f}, mAP "
           f"{100 * info['start']['mAP']:.1f}, infrared → visible nearest-neighbour accuracy "
           f"{_cell(info['start_nn'], 0, 1)}%; {info['done']} of {info['total']} runs finished"
           f"{'' if info['done'] == info['total'] else ' (PARTIAL)'}; mean ± std over seeds.", "",
           "| CMC lr | CMC epochs | seeds | CMC only Rank-1 / mAP | CMC-continued Rank-1 | full MMM Rank-1 / mAP "
           "| MMM − CMC only | MMM − continued | SCA on true labels Rank-1 | pair precision (chance / reachable) "
           "| ARI V / R | IR→V NN acc. | mixed clusters with both modalities (one person) |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in points:
        rounds = [_epoch_at(epochs.get(line.name, []), p["budget"]) for line in lines
                  if line.lr == p["lr"] and line.seed in p["seeds"]]
        mean = lambda key: mean_std([r.get(key, math.nan) for r in rounds])  # noqa: E731
        ari_v, ari_r, nn = mean("ari_visible"), mean("ari_infrared"), mean("nn_infrared_to_visible")
        both, correct = mean("mixed_cross_modal_clusters"), mean("mixed_cross_modal_correct")
        mixed = "–" if both[0] != both[0] else f"{both[0]:.1f} ({_cell(*correct[:2], None, 100, 0)}%)"
        out.append(
            f"| {p['lr']:g} | {p['budget']} | {len(p['seeds'])} "
            f"| {_cell(p['cmc_rank1'], p['cmc_rank1_std'], p['cmc_runs'])} / {_cell(p['cmc_mAP'], p['cmc_mAP_std'], p['cmc_runs'])} "
            f"| {_cell(p['continued_rank1'], p['continued_rank1_std'], p['continued_runs'])} "
            f"| {_cell(p['mmm_rank1'], p['mmm_rank1_std'], p['mmm_runs'])} / {_cell(p['mmm_mAP'], p['mmm_mAP_std'], p['mmm_runs'])} "
            f"| {_cell(p['gain_over_cmc'], p['gain_over_cmc_std'], len(p['gain_over_cmc_per_seed']))} "
            f"| {_cell(p['gain_over_continued'], p['gain_over_continued_std'], len(p['gain_over_continued_per_seed']))} "
            f"| {_cell(p['oracle_rank1'], p['oracle_rank1_std'], p['oracle_runs'])} "
            f"| {_cell(p['pair_precision'], p['pair_precision_std'], p['cmc_runs'], 1, 3)} "
            f"({_cell(p['pair_precision_chance'], 0, 1, 1, 3)} / {_cell(p['pair_precision_reachable'], 0, 1, 1, 2)}) "
            f"| {_cell(ari_v[0], 0, 1, 1, 2)} / {_cell(ari_r[0], 0, 1, 1, 2)} | {_cell(nn[0], 0, 1)}% | {mixed} |")
    out += ["", "Per seed (Rank-1, CMC only → CMC-continued → full MMM):", ""]
    for p in points:
        cells = ", ".join(f"seed {s}: {_num(c)} → {_num(k)} → {_num(m)}" for s, c, k, m in
                          zip(p["seeds"], p["cmc_rank1_per_seed"], p["continued_rank1_per_seed"],
                              p["mmm_rank1_per_seed"]))
        out.append(f"- lr {p['lr']:g}, {p['budget']} epochs: {cells}")
    v = info["verdict"]
    out += ["", "Verdict: " + (f"full MMM beats CMC only and CMC-continued beyond the seed spread with a pair "
                                f"precision ≥ 0.5 from {v['budget']} CMC epochs on." if v["found"] else
                                "no budget run here has full MMM above CMC only and CMC-continued beyond the "
                                "seed spread with a pair precision ≥ 0.5" + _trend(v)),
            "Time: CMC epochs (clustering + training, from the runs' metrics.jsonl) "
            + ", ".join(f"{name} {m:.0f} min" for name, m in info["cmc_minutes_per_line"].items())
            + f"; the branches: {info['minutes_branches']:.0f} min in all (per run: CMC only + MMLM "
            f"{info['minutes_per_kind']['cmc']:.1f} min, full MMM {info['minutes_per_kind']['mmm']:.1f} min, SCA on the "
            f"true labels {info['minutes_per_kind']['oracle']:.1f} min)."]
    return "\n".join(out) + "\n"


def _num(value: float | None) -> str:
    return "–" if value is None or value != value else f"{100 * value:.1f}"


def _trend(v: dict) -> str:
    if v.get("slope_per_doubling") is None:
        return "."
    text = f"; MMLM's pair precision changes by {v['slope_per_doubling']:+.3f} per doubling of the CMC epochs"
    if v.get("projected_budget") and v["projected_budget"] > 1e6:
        return text + ", which projects 0.5 beyond a million epochs (a flat trend)."
    if v.get("projected_budget"):
        rounded = float(f"{v['projected_budget']:.2g}")  # two significant figures: it is an extrapolation
        return text + f", which projects 0.5 at about {rounded:,.0f} epochs."
    return text + ", so the trend projects no budget that reaches 0.5."


def plot(points: list[dict], epochs: dict[str, list[dict]], lines: list[Line], info: dict, path: Path) -> Path:
    """Rank-1 against the budget (per-seed dots, means joined), the pair precision, the per-epoch signal."""
    fig = Figure(figsize=(17, 4.8), layout="constrained")
    ax_r, ax_p, ax_e = fig.subplots(1, 3)
    base_lr = info["lr"]
    own = [p for p in points if p["lr"] == base_lr]
    budgets = [p["budget"] for p in own]
    for kind, label in KINDS.items():
        colour, marker = STYLE[kind]
        xs = [p["budget"] for p in own if p[f"{kind}_rank1"] == p[f"{kind}_rank1"]]
        means = [100 * p[f"{kind}_rank1"] for p in own if p[f"{kind}_rank1"] == p[f"{kind}_rank1"]]
        if not xs:
            continue
        ax_r.plot(xs, means, color=colour, marker=marker, linestyle="-" if kind != "oracle" else "none",
                  markersize=12 if kind == "oracle" else 6, label=f"{label} (mean)")
        for p in own:
            dots = [100 * v for v in p[f"{kind}_rank1_per_seed"] if v is not None]
            ax_r.scatter([p["budget"]] * len(dots), dots, color=colour, alpha=0.35, s=14)
    for p in points:
        if p["lr"] != base_lr:
            for kind in ("cmc", "continued", "mmm"):
                colour, marker = STYLE[kind]
                dots = [100 * v for v in p[f"{kind}_rank1_per_seed"] if v is not None]
                ax_r.scatter([p["budget"]] * len(dots), dots, facecolors="none", edgecolors=colour, marker=marker,
                             s=40, label=f"{KINDS[kind]}, CMC lr {p['lr']:g}")
    ax_r.axhline(100 * info["start"]["rank1"], color="0.45", linestyle=":", label="start weights")
    if info["chance"] == info["chance"]:
        ax_r.axhline(100 * info["chance"], color="black", linestyle=(0, (1, 3)), label="chance")
    ax_r.set_ylabel(f"Rank-1 (%, {info['protocol']})")
    ax_r.set_title("Rank-1 after each budget", fontsize=10)
    ax_r.legend(fontsize=7, loc="best")
    for key, label, style in (("pair_precision", "MMLM's pair precision", "-"),
                              ("pair_precision_reachable", "reachable (best any pairing)", "--"),
                              ("pair_precision_chance", "chance", ":")):
        ax_p.plot(budgets, [p[key] for p in own], color="#c0392b", linestyle=style, marker="o" if style == "-" else None,
                  label=label)
    for p in own:  # per-seed precisions from the runs' records
        ax_p.scatter([p["budget"]] * len(p.get("pair_precision_per_seed", [])), p.get("pair_precision_per_seed", []),
                     color="#c0392b", alpha=0.35, s=14)
    for p in points:
        if p["lr"] != base_lr and p["pair_precision"] == p["pair_precision"]:
            ax_p.scatter([p["budget"]], [p["pair_precision"]], facecolors="none", edgecolors="#c0392b", s=40,
                         label=f"MMLM's pair precision, CMC lr {p['lr']:g}")
    ax_p.axhline(0.5, color="0.3", linewidth=0.8, linestyle="-.", label="0.5 (most pairs right)")
    ax_p.set_ylim(0, 1)
    ax_p.set_ylabel("pair precision")
    ax_p.set_title("MMLM's pairs on the CMC model", fontsize=10)
    ax_p.legend(fontsize=7, loc="upper left")
    twin = ax_e.twinx()
    for i, line in enumerate(x for x in lines if x.lr == base_lr):
        recs = epochs.get(line.name, [])
        xs = [r["epoch"] for r in recs]
        ax_e.plot(xs, [r.get("mixed_cross_modal_clusters", np.nan) for r in recs], color="#2c3e50", alpha=0.8,
                  linewidth=1, label="mixed clusters with both modalities" if i == 0 else None)
        twin.plot(xs, [r.get("mixed_cross_modal_correct", np.nan) for r in recs], color="#e67e22", alpha=0.8,
                  linewidth=1, label="share of them one person" if i == 0 else None)
        twin.plot(xs, [r.get("nn_infrared_to_visible", np.nan) for r in recs], color="#16a085", alpha=0.8,
                  linewidth=1, linestyle="--", label="IR→V nearest-neighbour accuracy" if i == 0 else None)
    ax_e.set_ylabel("clusters")
    twin.set_ylabel("share")
    twin.set_ylim(0, 1)
    ax_e.set_title("cross-modal signal during CMC (each seed; epoch 0 = start weights)", fontsize=10)
    handles = ax_e.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    labels = ax_e.get_legend_handles_labels()[1] + twin.get_legend_handles_labels()[1]
    ax_e.legend(handles, labels, fontsize=7, loc="upper left")
    for ax in (ax_r, ax_p):
        ax.set_xscale("log", base=2)
        ax.set_xticks(budgets, [str(b) for b in budgets])
        ax.set_xlabel("CMC epochs (budget)")
    ax_e.set_xlabel("CMC epochs trained (0 = the start weights)")
    for ax in (ax_r, ax_p, ax_e):
        ax.grid(alpha=0.3)
    fig.suptitle(f"MMM against CMC only as CMC trains longer ({info['setup_short']}; "
                 f"{info['done']}/{info['total']} runs)", fontsize=11)
    command_footer(fig, info["command"], width=200)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def write_outputs(runs: list[dict], lines: list[Line], work: Path, info: dict, args: argparse.Namespace) -> str:
    """JSON, PNG and Markdown of what is finished so far; returns the Markdown."""
    points = points_of(runs, lines)
    for p in points:  # the per-seed pair precisions for the figure's dots
        p["pair_precision_per_seed"] = [r.get("pair_precision") for r in runs if "error" not in r and
                                        r["kind"] == "cmc" and r["lr"] == p["lr"] and r["epochs"] == p["budget"]
                                        and r.get("pair_precision") is not None]
    epochs = {line.name: epoch_records(work / line.name / "cmc") for line in lines
              if (work / line.name / "cmc" / "metrics.jsonl").is_file()}
    info["verdict"] = verdict(points, args.lr)
    info["cmc_minutes_per_line"] = {name: sum(r["seconds"] for r in recs) / 60 for name, recs in epochs.items()}
    info["start_nn"] = next((recs[0].get("nn_infrared_to_visible", math.nan) for recs in epochs.values()
                             if recs and recs[0]["epoch"] == 0), math.nan)
    table = markdown(points, epochs, lines, info)
    write_json(Path(args.json), {k: v for k, v in info.items()} | {"points": points, "runs": runs, "epochs": epochs})
    plot(points, epochs, lines, info, Path(args.png))
    if args.md:
        Path(args.md).parent.mkdir(parents=True, exist_ok=True)
        Path(args.md).write_text(table, encoding="utf-8")
    if args.out:  # the record's section between the markers; the rest of the page is kept
        page = Path(args.out)
        previous = page.read_text(encoding="utf-8") if page.is_file() else ""
        page.write_text(replace_section(previous, table, MARK_START, MARK_END), encoding="utf-8")
    return table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=int, nargs="+", default=[8, 16, 32, 64], help="CMC epochs (both phases)")
    parser.add_argument("--phase1", type=int, default=None,
                        help="phase-1 epochs of every budget (default: the preset's cmc.phase1_epochs)")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2],
                        help="seeds at the preset's learning rate (none: only the --paper-lr runs)")
    parser.add_argument("--largest-seeds", type=int, nargs="+", default=None,
                        help="the seeds run at the largest budget (default: every seed)")
    parser.add_argument("--paper-lr", type=float, default=3.5e-4, help="the paper's CMC learning rate")
    parser.add_argument("--paper-lr-seeds", type=int, nargs="*", default=[0, 1],
                        help="seeds run at --paper-lr, at the largest budget only")
    parser.add_argument("--oracle-budgets", type=int, nargs="*", default=[8],
                        help="budgets where SCA also trains on the true identities (the supervised ceiling)")
    parser.add_argument("--work", default="runs/budget_curve", help="run folders (reused when finished)")
    parser.add_argument("--json", default=None, help="every run, epoch and point (default <work>/budget_curve.json)")
    parser.add_argument("--png", default=None, help="the figure (default <work>/budget_curve.png)")
    parser.add_argument("--md", default=None, help="also write the Markdown table here")
    parser.add_argument("--out", default=None, metavar="PAGE",
                        help="write the table between the page's budget-curve markers (e.g. "
                             "docs/experiments/budget-curve.md); the rest of the page is kept")
    add_setup_arguments(parser, preset="budget")
    return parser


def main() -> int:
    parser = build_parser()
    args = parser.parse_args()
    if min(args.budgets) < 1:
        parser.error(f"--budgets must be positive, got {args.budgets}")
    work = Path(args.work)
    args.json = args.json or str(work / "budget_curve.json")
    args.png = args.png or str(work / "budget_curve.png")
    command = command_line()
    print(command, flush=True)

    setup = prepare_setup(args, None if args.data_root else BUDGET_DATA)
    cfg = setup.config(work / "unused")
    args.lr, phase1 = cfg.cmc.lr, args.phase1 if args.phase1 is not None else cfg.cmc.phase1_epochs
    delta = sca_delta(cfg)
    lines = plan_lines(args, delta)
    start = evaluate_start(setup, work / "start_weights.json")
    info = {"command": command, "setup": setup.describe(), "setup_short": f"preset {setup.preset}, {setup.dataset}",
            "protocol": start["protocol"], "start": start, "chance": chance_rank1(setup, start["protocol"]),
            "lr": args.lr, "delta": delta, "sca_iterations": cfg.sca.epochs * sca_iterations(cfg), "phase1": phase1,
            "budgets": sorted(set(args.budgets)), "lines": [line.name for line in lines]}
    jobs = [(line, branch) for line in lines for branch in branches_of(line, args.oracle_budgets)]
    runs: list[dict] = []
    table = ""
    for line in lines:
        train_line(setup, work, line, phase1)
        for own, branch in jobs:
            if own != line:
                continue
            runs.append(run_branch(branch, setup, work, phase1))
            print(f"[{len(runs)}/{len(jobs)}] {line.name} {branch.kind}-e{branch.epochs:03d}: "
                  f"{ {k: runs[-1][k] for k in ('rank1', 'mAP', 'pair_precision', 'error') if k in runs[-1]} }",
                  flush=True)
        info.update(done=sum("error" not in r for r in runs), total=len(jobs),
                    minutes_branches=sum(r.get("minutes", 0.0) for r in runs),
                    minutes_per_kind={kind: mean_std([r["minutes"] for r in runs if r["kind"] == kind
                                                      and "minutes" in r])[0] for kind in ("cmc", "mmm", "oracle")})
        table = write_outputs(runs, lines, work, info, args)
    print(table)
    return report_failures(runs)


if __name__ == "__main__":
    sys.exit(main())
