"""`vireid demo`: synthetic visible-infrared data + the whole MMM pipeline on CPU, in minutes.

Besides the run folder of `vireid train`, the demo evaluates its start weights, measures how well
the start, CMC and final models cluster the training set (a hook called after each stage), and
draws what a reader wants to see: infrared queries with their top-10 visible matches, and a t-SNE of
visible and infrared test features before and after training. `demo_summary.json` collects the
numbers per stage.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from torch import nn

from vireid.config import Config, resolve_cache_dir
from vireid.data.registry import DatasetReader, open_dataset
from vireid.data.synthetic import generate_synthetic
from vireid.engine.context import RunContext
from vireid.engine.device import seed_everything, select_device
from vireid.engine.distributed import launch_rank
from vireid.engine.evaluate import sample_embedder
from vireid.engine.features import cluster_train_set
from vireid.engine.hooks import Hook
from vireid.engine.pipeline import RunResult, train
from vireid.engine.reuse import check_reuse
from vireid.engine.runlock import RunLock, acquire_run_folder
from vireid.engine.start_weights import resolve_start_weights
from vireid.engine.trainset import TrainSet, build_train_set
from vireid.evaluation import format_table, run_protocols
from vireid.fileio import check_writable_folder, write_json
from vireid.demo.pictures import ranked_list_picture, tsne_picture
from vireid.models.factory import create_model
from vireid.viz.report import write_report
from vireid.viz.runs import dataset_chance_rank1

# The demo's synthetic target set (generator seed 0; the pre-training source uses another seed).
DEMO_DATA = dict(layout="sysu", ids=80, images_per_camera=6, height=64, width=32, seed=0)
QUALITY_KEYS = ("ari_visible", "ari_infrared", "ari_mixed", "mixed_cross_modal_clusters", "mixed_cross_modal_correct")


def ensure_demo_data(data_dir: Path, progress: bool = True, overwrite: bool = False) -> Path:
    """Generate the demo dataset unless `data_dir` already holds the same one (the generator checks
    its synthetic.json, version included). Another dataset there is replaced only with `overwrite`
    (the demo's own cache folder), never in a folder the user named."""
    return Path(generate_synthetic(data_dir, progress=progress, overwrite=overwrite, **DEMO_DATA))


def evaluate_model(model: nn.Module, dataset: DatasetReader, ctx: RunContext, trials: int
                   ) -> tuple[dict, list, torch.Tensor]:
    """Protocol results of `model`, and the test samples with their features (N, D)."""
    embed = sample_embedder(model, ctx.image_size, ctx.cache_dir, ctx.extract_options(), key=f"{dataset.name}-test")
    seen: dict = {}

    def capturing(samples):
        seen["samples"], seen["features"] = list(samples), embed(samples)
        return seen["features"]

    results = run_protocols(capturing, dataset, trials=trials, progress=False)
    return results, seen["samples"], seen["features"]


def clustering_quality(model: nn.Module, train_set: TrainSet, cfg: Config, ctx: RunContext) -> dict:
    """How well `model`'s features cluster `train_set`, as CMC clusters it: ARI of the visible,
    infrared and mixed (modality-balanced Jaccard) clusterings against the true identities, and how
    many mixed clusters join both modalities (with the share whose majority identities agree)."""
    clustering = cluster_train_set(model, train_set, cfg.cluster, ctx, mixed=True)
    return {k: clustering.metrics[k] for k in QUALITY_KEYS if k in clustering.metrics}


class ClusteringQualityHook(Hook):
    """After each stage, the clustering quality of the stage's model (kept in `quality[stage]`)."""

    def __init__(self, train_set: TrainSet, cfg: Config, ctx: RunContext) -> None:
        self.train_set, self.cfg, self.ctx = train_set, cfg, ctx
        self.quality: dict[str, dict] = {}

    def after_stage(self, stage: str, model: nn.Module) -> None:
        self.quality[stage] = clustering_quality(model, self.train_set, self.cfg, self.ctx)


def stage_summary(start: dict, result: RunResult, quality: dict[str, dict]) -> dict:
    """Rank-1/mAP (all-search single-shot) of the start model, after CMC and after SCA, with each
    model's clustering quality, and MMLM's matching summary."""
    out: dict = {"start": {"rank1": start["all-single"]["rank1"], "mAP": start["all-single"]["mAP"]}}
    for stage in ("cmc", "sca"):
        evaluation = result.summaries.get(stage, {}).get("eval", {}).get("all-single")
        if evaluation is not None:
            out[stage] = {"rank1": evaluation["rank1"], "mAP": evaluation["mAP"]}
    for stage, metrics in quality.items():
        if stage in out:
            out[stage].update(metrics)
    if result.summaries.get("mmlm"):
        out["mmlm"] = dict(result.summaries["mmlm"])
    return out


def check_outputs(cfg: Config, resume: bool) -> RunLock | None:
    """The checks of `train`'s preflight that need no data or weights, made before the minutes of data
    generation and pre-training: the run folder and the cache can be written, no other process writes
    into the run folder (its lock, returned: the demo holds it until its last file is written; under
    torchrun rank 0 alone), and `resume` has a run to continue (or its absence one to start). The
    config is compared later, once complete."""
    check_writable_folder(cfg.output, "--output (setting 'output')")
    lock = acquire_run_folder(cfg.output, command="vireid demo") if launch_rank() == 0 else None
    try:
        check_reuse(Path(cfg.output), None, resume, created=lock is not None and bool(lock.created))
        check_writable_folder(resolve_cache_dir(cfg), "the cache folder (data.cache_dir, else $VIREID_CACHE_DIR)")
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    return lock


def run_demo(cfg: Config, data_dir: str | None = None, resume: bool = False) -> RunResult:
    """Generate data if needed, provide the start weights, train CMC → MMLM → SCA, report and draw;
    the run folder stays locked against other writers throughout."""
    lock = check_outputs(cfg, resume)
    try:
        return _run_demo(cfg, data_dir, resume)
    finally:
        if lock is not None:
            lock.release()


def _run_demo(cfg: Config, data_dir: str | None, resume: bool) -> RunResult:
    t0 = time.time()
    device = select_device(cfg.device)
    measure = RunContext.from_config(cfg, None, device)  # for measurements outside the run
    root = Path(data_dir).expanduser() if data_dir else measure.cache_dir / "demo-data"
    ensure_demo_data(root, overwrite=data_dir is None)
    cfg.data.root, cfg.data.dataset = str(root), "sysu"
    resolve_start_weights(cfg)
    dataset = open_dataset("sysu", str(root))
    seed_everything(cfg.seed)  # parameters the start weights do not set (model.pretrained=none) are seeded
    start_model = create_model(cfg.model).to(device)
    start_results, test_samples, start_features = evaluate_model(start_model, dataset, measure, cfg.eval.trials)
    train_set = build_train_set(dataset, cfg.data.height, cfg.data.width, measure.cache_dir)
    hook = ClusteringQualityHook(train_set, cfg, measure)
    hook.quality["start"] = clustering_quality(start_model, train_set, cfg, measure)
    del start_model
    result = train(cfg, resume=resume, hooks=[hook])
    plots = result.run_dir / "plots"
    if result.model is not None:
        _, samples, features = evaluate_model(result.model.to(device), dataset, measure, cfg.eval.trials)
        try:
            ranked_list_picture(dataset, samples, features.cpu(), plots / "ranked_lists.png")
            tsne_picture(test_samples, start_features.cpu(), plots / "tsne_start.png", "test features, start weights")
            tsne_picture(samples, features.cpu(), plots / "tsne_final.png", "test features, after training")
        except Exception as err:  # noqa: BLE001 - a picture never fails the demo
            print(f"demo plots skipped: {type(err).__name__}: {err}", file=sys.stderr)
    summary = stage_summary(start_results, result, hook.quality)
    summary["chance_rank1"] = dataset_chance_rank1(dataset)
    summary["seconds"] = time.time() - t0
    write_json(result.run_dir / "demo_summary.json", summary)
    report = write_report([result.run_dir], result.run_dir / "report.html", title="vireid demo")
    test_ids = len(dataset.test_ids)
    print("start weights (before training):")
    print(format_table({"all-single": start_results["all-single"]}))
    print("after MMM:")
    print(format_table(result.final))
    print(f"chance level: Rank-1 ≈ {100.0 / test_ids:.1f}% ({test_ids} test identities)")
    print(summary_lines(summary))
    print(f"run folder: {cfg.output} (config.yaml, log.txt, metrics.jsonl, demo_summary.json, checkpoints/, plots/)")
    print(f"report: {report} (open it in a browser)")
    return result


def summary_lines(summary: dict) -> str:
    """A few lines: Rank-1 / mAP / ARI per stage, and MMLM's summary."""
    lines = ["stage      Rank-1    mAP   ARI-V   ARI-R   ARI-M"]
    for stage in ("start", "cmc", "sca"):
        if stage not in summary:
            continue
        s = summary[stage]
        fmt = lambda k: f"{s[k]:7.3f}" if k in s else "      -"  # noqa: E731
        lines.append(f"{stage:<8}{100 * s['rank1']:8.2f}{100 * s['mAP']:7.2f} {fmt('ari_visible')} {fmt('ari_infrared')}"
                     f" {fmt('ari_mixed')}")
    if "mmlm" in summary:
        lines.append(mmlm_line(summary["mmlm"]))
    verdict = verdict_line(summary)
    if verdict:
        lines.append(verdict)
    return "\n".join(lines)


BUDGET_CURVE_PAGE = "docs/experiments/budget-curve.md"  # what the demo's closing line points to


def verdict_line(summary: dict) -> str | None:
    """Whether full MMM ended above or below CMC only, how many of MMLM's pairs were right, and where
    the gain is measured as CMC trains longer (one demo run at 40 test people cannot settle it)."""
    if "cmc" not in summary or "sca" not in summary:
        return None
    gain = 100 * (summary["sca"]["rank1"] - summary["cmc"]["rank1"])
    line = f"full MMM ended {abs(gain):.1f} Rank-1 points {'above' if gain >= 0 else 'below'} CMC only"
    precision = summary.get("mmlm", {}).get("pair_precision")
    if precision is not None:
        line += f" ({100 * precision:.0f}% of MMLM's cross-modal pairs joined the same person)"
    return line + f"; how MMM compares with CMC only as CMC trains longer: {BUDGET_CURVE_PAGE}."


def mmlm_line(m: dict) -> str:
    """MMLM in one line: how many pairs, how many right against the chance level, transferred ARI."""
    if "pair_precision" not in m:
        return "mmlm: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in m.items())
    chance = m.get("pair_precision_chance")
    return (f"mmlm: {m.get('pairs', '?')} pairs of {m.get('clusters_visible', '?')} visible and "
            f"{m.get('clusters_infrared', '?')} infrared clusters; pair precision {m['pair_precision']:.3f}"
            + (f" (chance {chance:.3f})" if chance is not None else "")
            + (f", transferred-label ARI {m['ari_transferred']:.3f}" if "ari_transferred" in m else ""))
