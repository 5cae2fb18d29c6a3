"""Component ablation of MMM (method.md §8's table) on the demo's synthetic data or any dataset and preset.

    python studies/ablation.py [--seeds 0 1 2] [--out docs/experiments/ablation-demo.md] [--work DIR] [--preset demo]
        [--dataset NAME --data-root DIR] [--variants "+MMLM" ... "full MMM"] [--png docs/images/ablation_bars.png]
        [--report FILE.html] [-- KEY=VALUE ...]

Rows: the start weights before any training (the same for every seed); CMC only; +MMLM (SCA with
only weighted CE + triplet); +MMLM+intra; +MMLM+inter; full MMM.
For each seed the CMC stage runs once; the four MMLM+SCA variants then resume a copy of it
(`checkpoints/cmc.pt`, the pipeline's own resume path), so they differ only in the SCA losses.
Columns: mean ± std over seeds of Rank-1 and mAP (the headline protocol: SYSU all-search
single-shot) and the ARI of the cross-modality labels against the true identities (MMLM's `ari_all`;
for "CMC only", the ARI of its last mixed visible+infrared clustering). KEY=VALUE overrides (before
the options or after `--`) apply to every run and are listed in the written table. `--variants`
trains only some SCA rows (on a CPU, e.g. `--variants "full MMM"` against CMC only).

Outputs: the Markdown table (--out: between the page's `<!-- ablation:start -->` and
`<!-- ablation:end -->` markers, else the whole page except its "## Notes" part), a JSON of every number
(<work>/ablation.json), a bar chart of Rank-1 and mAP per row with error bars over seeds and the
chance level (--png), and `vireid report`'s HTML page of the first seed's run folders (--report,
default <work>/ablation_report.html). Finished run folders in --work are reused (only with the same
settings), so an interrupted ablation continues where it stopped; variants keep only final.pt.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from stage_runs import (Setup, add_setup_arguments, chance_rank1, command_footer, command_line, evaluate_start,
                        final_metrics, mean_std, mmlm_summary, prepare_setup, resume_variant, train_or_reuse)
from matching_study import replace_section
from vireid.fileio import write_json

START = "start weights (no training)"
MARK_START, MARK_END = "<!-- ablation:start -->", "<!-- ablation:end -->"
VARIANTS = (
    ("+MMLM", ["sca.intra=false", "sca.inter=false"]),
    ("+MMLM+intra", ["sca.inter=false"]),
    ("+MMLM+inter", ["sca.intra=false"]),
    ("full MMM", []),
)
ROWS = [START, "CMC only"] + [name for name, _ in VARIANTS]


def rows_of(per_seed: dict[int, dict[str, dict]]) -> list[str]:
    """The rows measured (all of ROWS unless --variants chose fewer), in ROWS's order."""
    return [name for name in ROWS if name in per_seed[min(per_seed)]]


def _events(run: Path) -> list[dict]:
    return [json.loads(line) for line in open(run / "metrics.jsonl", encoding="utf-8") if line.strip()]


def variant_folder(work: Path, seed: int, name: str) -> Path:
    return work / f"seed{seed}-{name.replace('+', 'p').replace(' ', '_')}"


def run_seed(seed: int, work: Path, setup: Setup, variants: list[str], keep_checkpoints: bool = False
             ) -> dict[str, dict]:
    """The trained rows for one seed: {row: {rank1, mAP, ari[, pair_precision], run}} (fractions)."""
    rows: dict[str, dict] = {}
    base = train_or_reuse(setup.config(work / f"seed{seed}-cmc", [f"seed={seed}", "stages=[cmc]"]))
    _, cmc = final_metrics(base)
    last_cmc = [e for e in _events(base) if e.get("event") == "epoch" and e.get("stage") == "cmc"][-1]
    rows["CMC only"] = {"rank1": cmc["rank1"], "mAP": cmc["mAP"], "ari": last_cmc.get("ari_mixed", float("nan")),
                        "run": str(base)}
    for name, extra in VARIANTS:
        if name not in variants:
            continue
        cfg = setup.config(variant_folder(work, seed, name), [f"seed={seed}"] + extra)
        out = resume_variant(base, cfg, keep_checkpoints)
        _, final = final_metrics(out)
        summary = mmlm_summary(out)
        rows[name] = {"rank1": final["rank1"], "mAP": final["mAP"], "ari": summary.get("ari_all", float("nan")),
                      "pair_precision": summary.get("pair_precision", float("nan")), "run": str(out)}
    return rows


def row_stats(per_seed: dict[int, dict[str, dict]], name: str, key: str) -> tuple[float, float, int]:
    return mean_std([per_seed[s][name].get(key, np.nan) for s in sorted(per_seed)])


def markdown(per_seed: dict[int, dict[str, dict]], info: dict) -> str:
    seeds = sorted(per_seed)
    lines = [f"# Ablation ({info['setup']})", "",
             f"`{info['command']}`", "",
             f"Seeds {', '.join(map(str, seeds))}; mean ± std over seeds; {info['protocol']} "
             f"(`eval.trials` gallery trials per run). Chance Rank-1 ≈ {100 * info['chance']:.1f}%. "
             f"Total time {info['minutes']:.0f} min.", "",
             "| configuration | Rank-1 (%) | mAP (%) | ARI of cross-modality labels | MMLM pair precision |",
             "|---|---|---|---|---|"]
    for name in rows_of(per_seed):
        def cell(key: str, scale: float, digits: int) -> str:
            mean, std, n = row_stats(per_seed, name, key)
            return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}" if n else "–"
        lines.append(f"| {name} | {cell('rank1', 100, 1)} | {cell('mAP', 100, 1)} | {cell('ari', 1, 3)} | "
                     f"{cell('pair_precision', 1, 3)} |")
    lines += ["", "Per seed (Rank-1 / mAP / ARI):", ""]
    for s in seeds:
        lines.append(f"- seed {s}: " + "; ".join(
            f"{n} {100 * per_seed[s][n]['rank1']:.1f} / {100 * per_seed[s][n]['mAP']:.1f} / {per_seed[s][n]['ari']:.3f}"
            for n in rows_of(per_seed)[1:]))
    return "\n".join(lines) + "\n"


def write_page(out: Path, table: str) -> Path:
    """Write the table into `out`: between its `<!-- ablation:start -->` and `<!-- ablation:end -->`
    markers when it has them (an experiment record with its own title, question and answer around
    them; the table's own title is left out), else as the whole page above its "## Notes" part."""
    previous = out.read_text(encoding="utf-8") if out.exists() else ""
    if MARK_START in previous and MARK_END in previous:
        body = table.split("\n", 2)[2] if table.startswith("# ") else table
        text = replace_section(previous, body, MARK_START, MARK_END)
    else:
        notes = previous[previous.index("\n## Notes"):] if "\n## Notes" in previous else ""
        text = table + notes
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return out


def bar_chart(per_seed: dict[int, dict[str, dict]], info: dict, path: Path) -> Path:
    """Rank-1 and mAP per row (mean over seeds, error bars = std), with the chance Rank-1."""
    fig = Figure(figsize=(10, 4.4), layout="constrained")
    ax = fig.add_subplot()
    width = 0.38
    rows = rows_of(per_seed)
    x = np.arange(len(rows))
    for offset, (key, colour, label) in zip((-width / 2, width / 2),
                                            (("rank1", "#4a6fa5", "Rank-1"), ("mAP", "#e39b3b", "mAP"))):
        stats = [row_stats(per_seed, name, key) for name in rows]
        means = np.array([100 * m for m, _, _ in stats])
        stds = np.array([100 * s for _, s, _ in stats])
        ax.bar(x + offset, means, width, yerr=stds, capsize=4, color=colour, label=label)
        for xi, m, s in zip(x + offset, means, stds):
            ax.text(xi, m + s, f"{m:.1f}", ha="center", va="bottom", fontsize=8)
    if info["chance"] == info["chance"]:
        ax.axhline(100 * info["chance"], color="black", linestyle=(0, (1, 3)), label="chance Rank-1")
    ax.set_xticks(x, rows, fontsize=8.5)
    ax.set_ylabel(f"% ({info['protocol']})")
    ax.set_title(f"Ablation, mean ± std over seeds {', '.join(map(str, sorted(per_seed)))} ({info['setup_short']})",
                 fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    command_footer(fig, info["command"])
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def write_ablation_report(per_seed: dict[int, dict[str, dict]], path: Path) -> Path:
    """`vireid report`'s page of the first seed's run folders, one per trained row."""
    from vireid.viz.report import write_report

    seed = min(per_seed)
    rows = rows_of(per_seed)[1:]
    runs = [per_seed[seed][name]["run"] for name in rows]
    return write_report(runs, path, title=f"MMM ablation, seed {seed}: " + ", ".join(rows))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="docs/experiments/ablation-demo.md",
                        help="Markdown page of the table: between its ablation markers, else all of it above "
                             "'## Notes'")
    parser.add_argument("--work", default="runs/ablation", help="run folders (reused when complete)")
    parser.add_argument("--png", default="docs/images/ablation_bars.png", help="bar chart of Rank-1 and mAP per row")
    parser.add_argument("--report", default=None, help="HTML report of the first seed's runs "
                                                       "(default <work>/ablation_report.html)")
    parser.add_argument("--variants", nargs="+", choices=[name for name, _ in VARIANTS],
                        default=[name for name, _ in VARIANTS], help="SCA rows to train (default: all four)")
    parser.add_argument("--keep-checkpoints", action="store_true", help="keep every variant's cmc.pt and last.pt")
    add_setup_arguments(parser)
    args = parser.parse_args()
    work = Path(args.work)
    command = command_line()
    print(command, flush=True)

    t0 = time.time()
    setup = prepare_setup(args)
    work.mkdir(parents=True, exist_ok=True)
    start = evaluate_start(setup, work / "start_weights.json")
    per_seed = {}
    for seed in args.seeds:
        per_seed[seed] = {START: {"rank1": start["rank1"], "mAP": start["mAP"]},
                          **run_seed(seed, work, setup, args.variants, args.keep_checkpoints)}
        print(f"seed {seed} done after {(time.time() - t0) / 60:.1f} min: {json.dumps(per_seed[seed])}", flush=True)
    info = {"command": command, "setup": setup.describe(), "setup_short": f"preset {setup.preset}, {setup.dataset}",
            "protocol": start["protocol"], "chance": chance_rank1(setup, start["protocol"]),
            "minutes": (time.time() - t0) / 60}
    table = markdown(per_seed, info)
    write_page(Path(args.out), table)
    write_json(work / "ablation.json", {"command": command, "setup": info["setup"], "protocol": info["protocol"],
                                        "chance_rank1": info["chance"], "per_seed": per_seed})
    bar_chart(per_seed, info, Path(args.png))
    report = write_ablation_report(per_seed, Path(args.report or work / "ablation_report.html"))
    print(table)
    print(f"bar chart: {args.png}; report: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
