"""`vireid demo`: synthetic visible-infrared data + the whole MMM pipeline on CPU, in minutes.

Besides the run folder of `vireid train`, the demo evaluates its start weights, and draws what a
reader wants to see: infrared queries with their top-10 visible matches, and a t-SNE of visible and
infrared test features before and after training. `demo_summary.json` collects the numbers per stage.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from vireid.config import Config, resolve_cache_dir
from vireid.data.records import INFRARED

# The demo's synthetic target set (generator seed 0; the pre-training source uses another seed).
DEMO_DATA = dict(layout="sysu", ids=80, images_per_camera=6, height=64, width=32, seed=0)


def ensure_demo_data(data_dir: Path, progress: bool = True) -> Path:
    """Generate the demo dataset unless `data_dir` already holds the same one (the generator checks
    its synthetic.json, version included)."""
    from vireid.data.synthetic import generate_synthetic

    return Path(generate_synthetic(data_dir, progress=progress, **DEMO_DATA))


class _CapturingEmbedder:
    """Wraps a sample embedder and keeps the last samples and features it produced (for plots)."""

    def __init__(self, embed) -> None:
        self.embed, self.samples, self.features = embed, [], None

    def __call__(self, samples):
        self.samples, self.features = list(samples), self.embed(samples)
        return self.features


def evaluate_model(model, dataset, cfg: Config, device) -> tuple[dict, list, torch.Tensor]:
    """Protocol results of `model`, and the test samples with their features (N, D)."""
    from vireid.engine.trainset import sample_embedder
    from vireid.evaluation import run_protocols

    embed = _CapturingEmbedder(sample_embedder(model, cfg, device, key=f"{dataset.name}-test"))
    results = run_protocols(embed, dataset, trials=cfg.eval.trials, progress=False)
    return results, embed.samples, embed.features


def ranked_list_picture(dataset, samples: list, features: torch.Tensor, path: Path, queries: int = 6,
                        topk: int = 10, seed: int = 0) -> Path:
    """Infrared queries (one per random test identity) and their top-k visible gallery images of the
    all-search multi-shot gallery (trial 0), SYSU exclusion applied; correct matches framed green."""
    from vireid.viz import plot_ranked_lists

    row = {s.path: i for i, s in enumerate(samples)}
    query = [s for s in dataset.query("all")]
    gallery = dataset.gallery("all", trial=0, shots=10)
    rng = np.random.default_rng(seed)
    pids = rng.choice(sorted({s.pid for s in query}), size=min(queries, len({s.pid for s in query})), replace=False)
    chosen = [rng.choice([s for s in query if s.pid == p]) for p in pids]
    q = features[[row[s.path] for s in chosen]]
    g = features[[row[s.path] for s in gallery]]
    dist = 1.0 - q @ g.T  # (Q, G)
    g_cam = torch.tensor([s.camid for s in gallery])
    q_cam = torch.tensor([s.camid for s in chosen])
    dist[(q_cam[:, None] == 3) & (g_cam[None, :] == 2)] = float("inf")  # SYSU: cam3 queries skip cam2
    order = dist.argsort(dim=1)[:, :topk].numpy()
    g_pid = np.array([s.pid for s in gallery])
    correct = g_pid[order] == np.array([s.pid for s in chosen])[:, None]
    return plot_ranked_lists([s.path for s in chosen], [s.path for s in gallery], order, correct, path)


def tsne_picture(samples: list, features: torch.Tensor, path: Path, title: str, max_points: int = 800) -> Path:
    """t-SNE of test features, visible vs infrared (islands per modality = not aligned)."""
    from vireid.viz import plot_tsne

    infrared = np.array([s.modality == INFRARED for s in samples])
    return plot_tsne(features, infrared, path, title=title, max_points=max_points)


def _final_model(run_dir: Path):
    """The last model the run saved: final.pt (after SCA), else cmc.pt (CMC-only runs)."""
    from vireid.inference import model_from_checkpoint

    for name in ("final.pt", "cmc.pt"):
        path = run_dir / "checkpoints" / name
        if path.is_file():
            return model_from_checkpoint(path)[0]
    return None


def _stage_summary(run_dir: Path, start: dict, quality: dict[str, dict]) -> dict:
    """Rank-1/mAP of the start model, after CMC and after SCA, with each model's clustering quality
    (`quality[stage]`, from `clustering_quality`)."""
    events = [json.loads(line) for line in open(run_dir / "metrics.jsonl", encoding="utf-8") if line.strip()]
    evals = {e["stage"]: e for e in events if e.get("event") == "eval" and e.get("protocol") == "all-single"
             and e.get("epoch") is None}  # the evaluation after each stage, not the periodic ones
    mmlm = next((e for e in events if e.get("event") == "mmlm"), {})
    out: dict = {"start": {"rank1": start["all-single"]["rank1"], "mAP": start["all-single"]["mAP"]}}
    for stage in ("cmc", "sca"):
        if stage in evals:
            out[stage] = {"rank1": evals[stage]["rank1"], "mAP": evals[stage]["mAP"]}
    for stage, metrics in quality.items():
        if stage in out:
            out[stage].update(metrics)
    if mmlm:
        out["mmlm"] = {k: v for k, v in mmlm.items() if k not in ("event", "stage", "time") and v is not None}
    return out


def run_demo(cfg: Config, data_dir: str | None = None, resume: bool = False) -> dict:
    """Generate data if needed, provide the start weights, train CMC → MMLM → SCA, report and draw."""
    from vireid.data.registry import open_dataset
    from vireid.engine.device import seed_everything, select_device
    from vireid.engine.pipeline import model_from_config, train
    from vireid.evaluation import format_table

    t0 = time.time()
    cache = resolve_cache_dir(cfg)
    root = Path(data_dir).expanduser() if data_dir else cache / "demo-data"
    ensure_demo_data(root)
    cfg.data.root = str(root)
    cfg.data.dataset = "sysu"
    if cfg.model.pretrained == "synthetic" and not cfg.model.weights_path:
        from vireid.engine.pretrain import synthetic_pretrained_weights

        cfg.model.weights_path = str(synthetic_pretrained_weights(cfg, cache))
    dataset = open_dataset("sysu", str(root))
    device = select_device(cfg.device)
    from vireid.engine.trainset import build_train_set

    seed_everything(cfg.seed)  # parameters the start weights do not set (model.pretrained=none) are seeded
    start_model = model_from_config(cfg).to(device)
    start_results, test_samples, start_features = evaluate_model(start_model, dataset, cfg, device)
    train_set = build_train_set(dataset, cfg)
    quality = {"start": clustering_quality(start_model, train_set, cfg, device)}
    del start_model
    results = train(cfg, resume=resume)
    run_dir = Path(cfg.output)
    plots = run_dir / "plots"
    cmc_checkpoint = run_dir / "checkpoints" / "cmc.pt"
    if cmc_checkpoint.is_file():
        from vireid.inference import model_from_checkpoint

        quality["cmc"] = clustering_quality(model_from_checkpoint(cmc_checkpoint)[0].to(device), train_set, cfg, device)
    model = _final_model(run_dir)
    if model is not None:
        model = model.to(device)
        _, samples, features = evaluate_model(model, dataset, cfg, device)
        quality["sca"] = clustering_quality(model, train_set, cfg, device)
        try:
            ranked_list_picture(dataset, samples, features.cpu(), plots / "ranked_lists.png")
            tsne_picture(test_samples, start_features.cpu(), plots / "tsne_start.png", "test features, start weights")
            tsne_picture(samples, features.cpu(), plots / "tsne_final.png", "test features, after training")
        except Exception as err:  # noqa: BLE001 - a picture never fails the demo
            print(f"demo plots skipped: {type(err).__name__}: {err}")
    summary = _stage_summary(run_dir, start_results, quality)
    summary["seconds"] = time.time() - t0
    (run_dir / "demo_summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    test_ids = len(dataset.test_ids)
    print("start weights (before training):")
    print(format_table({"all-single": start_results["all-single"]}))
    print("after MMM:")
    print(format_table(results))
    print(f"chance level: Rank-1 ≈ {100.0 / test_ids:.1f}% ({test_ids} test identities)")
    print(_summary_lines(summary))
    print(f"run folder: {cfg.output} (config.yaml, log.txt, metrics.jsonl, demo_summary.json, checkpoints/, plots/)")
    return results


def clustering_quality(model, train_set, cfg: Config, device) -> dict:
    """How well `model`'s features cluster `train_set` (a `TrainSet`), as CMC clusters it: ARI of
    the visible, infrared and mixed (both modalities, modality-balanced Jaccard) clusterings against the true
    identities, and how many mixed clusters join both modalities (with the share whose two
    modalities' majority identities agree)."""
    from vireid.engine.features import cluster_train_set

    rnd = cluster_train_set(model, train_set, cfg, device, mixed=True)
    keys = ("ari_visible", "ari_infrared", "ari_mixed", "mixed_cross_modal_clusters", "mixed_cross_modal_correct")
    return {k: rnd.metrics[k] for k in keys if k in rnd.metrics}


def _summary_lines(summary: dict) -> str:
    """A few lines: Rank-1 / mAP / ARI per stage."""
    lines = ["stage      Rank-1    mAP   ARI-V   ARI-R   ARI-M"]
    for stage in ("start", "cmc", "sca"):
        if stage not in summary:
            continue
        s = summary[stage]
        fmt = lambda k, scale=1.0: f"{scale * s[k]:7.3f}" if k in s else "      -"  # noqa: E731
        lines.append(f"{stage:<8}{100 * s['rank1']:8.2f}{100 * s['mAP']:7.2f} {fmt('ari_visible')} {fmt('ari_infrared')}"
                     f" {fmt('ari_mixed')}")
    if "mmlm" in summary:
        m = summary["mmlm"]
        lines.append("mmlm: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in m.items()))
    return "\n".join(lines)
