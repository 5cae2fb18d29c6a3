"""Cluster study: which per-modality clustering settings give MMLM clusters it can pair, on one model.

    python studies/cluster_study.py RUN_DIR [--k1 10 15 20 30] [--eps 0.35 0.4 ... 0.7]
        [--out docs/experiments/matching-and-clusters.md] [--json FILE]
    python studies/cluster_study.py --features FILE.npz [...]

MMLM inherits the CMC model's per-modality clusters: a person split into several visible clusters or
two people merged into one infrared cluster caps what any matching can pair right. This study takes
the clustering features a finished run saved (RUN_DIR/mmlm/matching.npz, or any .npz with
features_visible/_infrared and pids_visible/_infrared) and re-clusters each modality over a grid of
`cluster.k1` x DBSCAN eps (k2 and min_samples from the run's config.yaml, or the defaults), with
the true identities measuring each clustering: clusters, outliers, clusters per person, ARI. Then,
for every (visible eps, infrared eps) at the run's k1 (or --match-k1), it runs the run's MMLM matching and records
the pair precision, the reachable pair precision (no matching can do better) and the chance level.
No model runs, so it takes seconds to minutes on a CPU; it shows what the MMLM stage would receive
with other radii (`cluster.eps_visible`, `cluster.eps_infrared`), not how CMC training would change.

Outputs: JSON (--json, default next to the features as cluster_study.json) and Markdown tables,
printed and written between `<!-- cluster-study:start -->` and `<!-- cluster-study:end -->` of --out.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score

from matching_study import chance_and_reachable, replace_section
from stage_runs import command_line
from vireid.clustering.dbscan import dbscan_labels
from vireid.clustering.jaccard import jaccard_distance
from vireid.config import Config, load_config
from vireid.engine.features import ClusteringRound, _fit_k
from vireid.engine.mmlm import match_round
from vireid.engine.rematch import read_matching_arrays
from vireid.errors import VireidError
from vireid.fileio import write_json

MARK_START, MARK_END = "<!-- cluster-study:start -->", "<!-- cluster-study:end -->"
MODALITIES = ("visible", "infrared")


def clustering_measures(labels: np.ndarray, pids: np.ndarray) -> dict:
    """Clusters, outliers, clusters per true identity and ARI (outliers as singletons, as in CMC's logs)."""
    clustered = labels >= 0
    singletons = np.where(clustered, labels, labels.max(initial=-1) + 1 + np.arange(labels.size))
    clusters = int(labels.max(initial=-1)) + 1
    return {"clusters": clusters, "outliers": int((~clustered).sum()),
            "clusters_per_person": clusters / len(np.unique(pids)),
            "ari": float(adjusted_rand_score(pids, singletons))}


def sweep_modality(features: torch.Tensor, pids: np.ndarray, k1s: list[int], k2: int, eps: list[float],
                   min_samples: int) -> dict[tuple[int, float], tuple[np.ndarray, dict]]:
    """{(k1, eps): (labels, measures)}: one Jaccard distance per k1, one DBSCAN per eps."""
    out = {}
    for k1 in k1s:
        fit_k1, fit_k2 = _fit_k(k1, k2, len(features))
        distance = jaccard_distance(features, fit_k1, fit_k2)
        for e in eps:
            labels = dbscan_labels(distance, e, min_samples)
            out[(k1, e)] = (labels, clustering_measures(labels, pids))
    return out


def match_grid(arrays: dict, labels: dict[str, dict[float, np.ndarray]], cfg: Config) -> list[dict]:
    """MMLM's matching (the run's settings) for every (visible eps, infrared eps) pair of labelings."""
    feats = {m: torch.from_numpy(arrays[f"features_{m}"]).float() for m in MODALITIES}
    truth = (arrays["pids_visible"], arrays["pids_infrared"])
    rows = []
    for eps_v, labels_v in labels["visible"].items():
        for eps_r, labels_r in labels["infrared"].items():
            row = {"eps_visible": eps_v, "eps_infrared": eps_r}
            chance, reachable = chance_and_reachable(labels_v, truth[0], labels_r, truth[1])
            row.update(chance_pair_precision=chance, reachable_pair_precision=reachable)
            if (labels_v >= 0).any() and (labels_r >= 0).any():
                clustering = ClusteringRound(feats["visible"], feats["infrared"], labels_v.astype(np.int64),
                                             labels_r.astype(np.int64))
                _, summary = match_round(clustering, cfg.mmlm, torch.device("cpu"), truth)
                row.update(pair_precision=summary["pair_precision"], ari_transferred=summary["ari_transferred"])
            rows.append(row)
    return rows


# ---------------------------------------------------------------------------- outputs
def _num(value, digits: int = 3) -> str:
    return "–" if value is None or value != value else f"{value:.{digits}f}"


def markdown(result: dict) -> str:
    """Per-modality tables (k1 x eps), then the matching grid at the run's k1, with the run's setting marked."""
    lines = [f"`{result['command']}`", "", f"{result['source']}; {result['minutes']:.1f} min.", ""]
    for modality in MODALITIES:
        sweep, chosen = result["sweep"][modality], result["run_setting"][modality]
        eps = sorted({r["eps"] for r in sweep})
        lines += [f"#### {modality.capitalize()} clusterings: clusters per person / ARI "
                  f"({result['people'][modality]} people)", "",
                  "| k1 \\ eps | " + " | ".join(f"{e:g}" for e in eps) + " |", "|---|" + "---|" * len(eps)]
        best = max(r["ari"] for r in sweep)
        for k1 in sorted({r["k1"] for r in sweep}):
            cells = []
            for e in eps:
                r = next(r for r in sweep if r["k1"] == k1 and r["eps"] == e)
                cell = f"{r['clusters_per_person']:.2f} / {r['ari']:.3f}"
                cell = f"**{cell}**" if r["ari"] == best else cell
                cells.append(cell + (" ←" if (k1, e) == tuple(chosen) else ""))
            lines.append(f"| {k1} | " + " | ".join(cells) + " |")
        lines.append("")
    grid = result["matching"]
    eps_v = sorted({r["eps_visible"] for r in grid})
    eps_r = sorted({r["eps_infrared"] for r in grid})
    lines += [f"#### MMLM pair precision (reachable pair precision) at k1 = {result['match_k1']}", "",
              "| eps visible \\ eps infrared | " + " | ".join(f"{e:g}" for e in eps_r) + " |",
              "|---|" + "---|" * len(eps_r)]
    best = max((r.get("pair_precision", -1.0) for r in grid), default=-1.0)
    for ev in eps_v:
        cells = []
        for er in eps_r:
            r = next(r for r in grid if r["eps_visible"] == ev and r["eps_infrared"] == er)
            cell = f"{_num(r.get('pair_precision'))} ({_num(r['reachable_pair_precision'], 2)})"
            cell = f"**{cell}**" if r.get("pair_precision") == best else cell
            own = (result["match_k1"], ev, er) == (result["run_setting"]["visible"][0],
                                                   result["run_setting"]["visible"][1], result["run_setting"]["infrared"][1])
            cells.append(cell + (" ←" if own else ""))
        lines.append(f"| {ev:g} | " + " | ".join(cells) + " |")
    lines += ["", "←: the run's own setting. Bold: the best cell. Pair precision counts a visible cluster right when "
              "its partner's majority identity is its own; the reachable value in brackets is the most any "
              "matching could reach on those clusters."]
    return "\n".join(lines) + "\n"


def load_source(args: argparse.Namespace) -> tuple[Path, Config, str]:
    """The feature file, the config its run used (defaults for a bare file), and a description."""
    if args.run:
        run = Path(args.run)
        path = run / "mmlm" / "matching.npz"
        if not path.is_file():
            raise VireidError(f"{run} has no mmlm/matching.npz: give a run folder whose MMLM stage finished")
        cfg = load_config(file=run / "config.yaml") if (run / "config.yaml").is_file() else Config()
        return path, cfg, f"clustering features of run {run} (its MMLM stage)"
    path = Path(args.features)
    if not path.is_file():
        raise VireidError(f"feature file {path} does not exist")
    return path, Config(), f"clustering features in {path}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("run", nargs="?", help="a finished run folder (its mmlm/matching.npz and config.yaml)")
    source.add_argument("--features", help="an .npz with features_* and pids_* of both modalities")
    parser.add_argument("--k1", type=int, nargs="+", default=[10, 15, 20, 30], help="k-reciprocal k1 values")
    parser.add_argument("--eps", type=float, nargs="+", default=[0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7],
                        help="DBSCAN radii")
    parser.add_argument("--match-k1", type=int, default=None,
                        help="k1 of the clusterings that are matched (default: the run's cluster.k1)")
    parser.add_argument("--out", default="docs/experiments/matching-and-clusters.md", help="Markdown file whose cluster-study section is replaced")
    parser.add_argument("--json", default=None, help="every number (default: cluster_study.json beside the features)")
    return parser


def main() -> int:
    args = build_parser().parse_args()
    command = command_line()
    print(command, flush=True)
    t0 = time.time()
    path, cfg, source = load_source(args)
    arrays = read_matching_arrays(path)
    if "pids_visible" not in arrays or "pids_infrared" not in arrays:
        raise VireidError(f"{path} lacks pids_visible/pids_infrared: the study needs the true identities")
    c = cfg.cluster
    run_setting = {"visible": (c.k1, c.eps_visible or c.eps), "infrared": (c.k1, c.eps_infrared or c.eps)}
    match_k1 = args.match_k1 or c.k1
    k1s = sorted(set(args.k1) | {c.k1, match_k1})
    result = {"command": command, "source": source, "sweep": {}, "people": {}, "run_setting": run_setting,
              "match_k1": match_k1}
    labels_at_k1: dict[str, dict[float, np.ndarray]] = {}
    for modality in MODALITIES:
        eps = sorted(set(args.eps) | {run_setting[modality][1]})
        pids = arrays[f"pids_{modality}"]
        sweep = sweep_modality(torch.from_numpy(arrays[f"features_{modality}"]).float(), pids, k1s, c.k2, eps,
                               c.min_samples)
        result["sweep"][modality] = [{"k1": k1, "eps": e, **m} for (k1, e), (_, m) in sweep.items()]
        result["people"][modality] = int(len(np.unique(pids)))
        labels_at_k1[modality] = {e: lab for (k1, e), (lab, _) in sweep.items() if k1 == match_k1}
        print(f"{modality}: {len(sweep)} clusterings", flush=True)
    result["matching"] = match_grid(arrays, labels_at_k1, cfg)
    result["minutes"] = (time.time() - t0) / 60
    table = markdown(result)
    write_json(Path(args.json or path.with_name("cluster_study.json")), result)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = out.read_text(encoding="utf-8") if out.exists() else ""
    out.write_text(replace_section(text, table, MARK_START, MARK_END), encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except VireidError as err:
        sys.exit(f"error: {err}")
