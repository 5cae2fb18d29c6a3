"""Component ablation of MMM on the demo's synthetic data (METHOD §8's table, at demo scale).

    python benchmarks/ablation.py [--seeds 0 1 2] [--out docs/ablation.md] [--work DIR] [KEY=VALUE ...]

Rows: the start weights before any training (the same for every seed); CMC only; +MMLM (SCA with
only weighted CE + triplet); +MMLM+intra; +MMLM+inter; full MMM.
For each seed the CMC stage runs once; the four MMLM+SCA variants then resume from its checkpoint
(`checkpoints/cmc.pt`, the pipeline's own resume path), so they differ only in the SCA losses.
Columns: mean ± std over seeds of Rank-1 and mAP (SYSU all-search single-shot) and the ARI of the
cross-modality labels against the true identities (MMLM's `ari_all`; for "CMC only", the ARI of
its last mixed visible+infrared clustering). KEY=VALUE overrides apply to every run (e.g. a
shorter schedule) and are listed in the written table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

START = "start weights (no training)"
VARIANTS = (
    ("+MMLM", ["sca.intra=false", "sca.inter=false"]),
    ("+MMLM+intra", ["sca.inter=false"]),
    ("+MMLM+inter", ["sca.intra=false"]),
    ("full MMM", []),
)


def _events(run: Path) -> list[dict]:
    return [json.loads(line) for line in open(run / "metrics.jsonl", encoding="utf-8") if line.strip()]


def _eval(run: Path, stage: str) -> dict:
    """The last all-single evaluation event of `stage`."""
    found = [e for e in _events(run) if e.get("event") == "eval" and e.get("stage") == stage
             and e.get("protocol") == "all-single"]
    return found[-1]


def _config(overrides: list[str], output: Path, data_root: Path, weights: str):
    from vireid.config import load_config

    return load_config("demo", [f"output={output}", f"data.root={data_root}", f"model.weights_path={weights}",
                                "data.dataset=sysu"] + overrides)


def run_seed(seed: int, work: Path, data_root: Path, weights: str, overrides: list[str]) -> dict[str, dict]:
    """All five rows for one seed: {row: {rank1, mAP, ari}} (fractions)."""
    from vireid.config import save_config
    from vireid.engine.pipeline import train

    rows: dict[str, dict] = {}
    base = work / f"seed{seed}-cmc"
    if not (base / "final_metrics.json").exists():
        shutil.rmtree(base, ignore_errors=True)
        train(_config(overrides + [f"seed={seed}", "stages=[cmc]"], base, data_root, weights))
    cmc_eval = _eval(base, "cmc")
    last_cmc = [e for e in _events(base) if e.get("event") == "epoch" and e.get("stage") == "cmc"][-1]
    rows["CMC only"] = {"rank1": cmc_eval["rank1"], "mAP": cmc_eval["mAP"], "ari": last_cmc.get("ari_mixed", float("nan"))}
    for name, extra in VARIANTS:
        out = work / f"seed{seed}-{name.replace('+', 'p').replace(' ', '_')}"
        if not (out / "final_metrics.json").exists():
            shutil.rmtree(out, ignore_errors=True)
            shutil.copytree(base, out, ignore=shutil.ignore_patterns("final_metrics.json", "plots", "tb"))
            cfg = _config(overrides + [f"seed={seed}"] + extra, out, data_root, weights)
            save_config(cfg, out / "config.yaml")  # the variant resumes the CMC run as its own
            train(cfg, resume=True)
        final = _eval(out, "sca")
        summary = json.loads((out / "mmlm" / "summary.json").read_text())
        rows[name] = {"rank1": final["rank1"], "mAP": final["mAP"], "ari": summary.get("ari_all", float("nan")),
                      "pair_precision": summary.get("pair_precision", float("nan"))}
    return rows


def evaluate_start(data_root: Path, weights: str, overrides: list[str]) -> dict:
    """Rank-1 / mAP of the start weights (no training), with the demo preset's evaluation."""
    from vireid.data.registry import open_dataset
    from vireid.demo.command import evaluate_model
    from vireid.engine.context import RunContext
    from vireid.engine.device import select_device
    from vireid.models import create_model

    cfg = _config(overrides, Path("unused"), data_root, weights)
    device = select_device(cfg.device)
    model = create_model(cfg.model).to(device).eval()
    ctx = RunContext.from_config(cfg, None, device)
    results = evaluate_model(model, open_dataset("sysu", data_root), ctx, cfg.eval.trials)[0]["all-single"]
    return {"rank1": results["rank1"], "mAP": results["mAP"]}


def markdown(per_seed: dict[int, dict[str, dict]], overrides: list[str], minutes: float, chance: float) -> str:
    names = [START, "CMC only"] + [n for n, _ in VARIANTS]
    seeds = sorted(per_seed)
    lines = ["# Ablation on the demo's synthetic data", "",
             f"Seeds {', '.join(map(str, seeds))}; mean ± std over seeds; SYSU all-search single-shot "
             f"(`eval.trials` gallery trials per run: 10 in the demo preset). "
             f"Chance Rank-1 ≈ {100 * chance:.1f}%. Total time {minutes:.0f} min on the 2-core CPU machine.",
             "Preset `demo`" + (" with " + " ".join(f"`{o}`" for o in overrides) if overrides else "") + ".", "",
             "| configuration | Rank-1 (%) | mAP (%) | ARI of cross-modality labels | MMLM pair precision |",
             "|---|---|---|---|---|"]
    for name in names:
        vals = {k: np.array([per_seed[s][name][k] for s in seeds if k in per_seed[s][name]], dtype=float)
                for k in ("rank1", "mAP", "ari", "pair_precision")}
        cell = lambda v, scale: f"{scale * v.mean():.1f} ± {scale * v.std():.1f}" if len(v) else "–"  # noqa: E731
        cell3 = lambda v: f"{v.mean():.3f} ± {v.std():.3f}" if len(v) else "–"  # noqa: E731
        lines.append(f"| {name} | {cell(vals['rank1'], 100)} | {cell(vals['mAP'], 100)} | {cell3(vals['ari'])} | "
                     f"{cell3(vals['pair_precision'])} |")
    lines += ["", "Per seed (Rank-1 / mAP / ARI):", ""]
    for s in seeds:
        lines.append(f"- seed {s}: " + "; ".join(
            f"{n} {100 * per_seed[s][n]['rank1']:.1f} / {100 * per_seed[s][n]['mAP']:.1f} / {per_seed[s][n]['ari']:.3f}"
            for n in names[1:]))
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="docs/ablation.md", help="Markdown table written here (the part above the notes)")
    parser.add_argument("--work", default="runs/ablation", help="run folders (reused when complete)")
    parser.add_argument("--cache-dir", default=None, help="demo data + pre-trained weights (default: the vireid cache)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args()

    from vireid.config import load_config, resolve_cache_dir
    from vireid.demo.command import ensure_demo_data
    from vireid.demo.pretrain import synthetic_pretrained_weights

    t0 = time.time()
    overrides = ([f"data.cache_dir={args.cache_dir}"] if args.cache_dir else []) + args.overrides
    cfg = load_config("demo", overrides)
    cache = resolve_cache_dir(cfg)
    root = ensure_demo_data(cache / "demo-data")
    weights = str(synthetic_pretrained_weights(cfg, cache))
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    per_seed = {}
    start = evaluate_start(root, weights, overrides)
    for seed in args.seeds:
        per_seed[seed] = {START: start, **run_seed(seed, work, root, weights, overrides)}
        print(f"seed {seed} done after {(time.time() - t0) / 60:.1f} min: {json.dumps(per_seed[seed])}", flush=True)
    test_ids = len((root / "exp" / "test_id.txt").read_text().split(","))
    table = markdown(per_seed, args.overrides, (time.time() - t0) / 60, 1.0 / test_ids)
    out = Path(args.out)
    previous = out.read_text(encoding="utf-8") if out.exists() else ""
    notes = previous[previous.index("\n## Notes"):] if "\n## Notes" in previous else ""  # kept below the table
    out.write_text(table + notes, encoding="utf-8")
    (work / "ablation.json").write_text(json.dumps(per_seed, indent=2))
    print(table)


if __name__ == "__main__":
    sys.exit(main())
