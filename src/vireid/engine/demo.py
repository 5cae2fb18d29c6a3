"""`vireid demo`: synthetic visible-infrared data + the whole MMM pipeline on CPU, in minutes."""

from __future__ import annotations

from pathlib import Path

from vireid.config import Config, resolve_cache_dir

# The demo's synthetic target set (identities split half train, half test by the generator).
DEMO_DATA = dict(layout="sysu", ids=80, images_per_camera=6, height=128, width=64, seed=0)


def ensure_demo_data(data_dir: Path, progress: bool = True) -> Path:
    """Generate the demo dataset unless `data_dir` already holds the same one (the generator checks
    its synthetic.json, version included)."""
    from vireid.data.synthetic import generate_synthetic

    return Path(generate_synthetic(data_dir, progress=progress, **DEMO_DATA))


def run_demo(cfg: Config, data_dir: str | None = None, resume: bool = False) -> dict:
    """Generate data if needed, provide the start weights, train CMC → MMLM → SCA, report."""
    from vireid.engine.pipeline import train
    from vireid.evaluation import format_table

    cache = resolve_cache_dir(cfg)
    root = Path(data_dir).expanduser() if data_dir else cache / "demo-data"
    ensure_demo_data(root)
    cfg.data.root = str(root)
    cfg.data.dataset = "sysu"
    results = train(cfg, resume=resume)
    test_ids = len(open(root / "exp" / "test_id.txt").read().split(","))
    print(format_table(results))
    print(f"chance level: Rank-1 ≈ {100.0 / test_ids:.1f}% ({test_ids} test identities)")
    print(f"run folder: {cfg.output} (config.yaml, log.txt, metrics.jsonl, checkpoints/, plots/)")
    return results
