"""A finished run folder read back for people: config, final metrics, per-stage summary, pictures.

Reads only what every run writes (config.yaml, metrics.jsonl, final_metrics.json, plots/) and, when
present, what the demo adds (demo_summary.json); it never imports the training engine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vireid.config import flatten_config
from vireid.errors import VireidError
from vireid.viz.curves import latest_events, mmlm_event, read_events

REQUIRED_FILES = ("config.yaml", "metrics.jsonl", "final_metrics.json")
# Pictures a run draws into plots/, in the order a reader wants them; others follow by name.
PICTURE_ORDER = ("tsne_start.png", "tsne_final.png", "ranked_lists.png", "cmc.png")
PICTURE_CAPTIONS = {
    "tsne_start.png": "t-SNE of test features with the start weights (visible vs infrared)",
    "tsne_final.png": "t-SNE of test features after training (visible vs infrared)",
    "ranked_lists.png": "infrared queries and their top-10 visible matches (green: same person)",
    "cmc.png": "CMC curves of the final model",
}
STAGE_ORDER = ("start", "cmc", "mmlm", "sca", "final")
# Per-stage numbers of the stage summary, as a stage's evaluation / clustering / MMLM report them.
SUMMARY_KEYS = ("rank1", "mAP", "ari_visible", "ari_infrared", "ari_mixed", "mixed_cross_modal_clusters",
                "mixed_cross_modal_correct", "pair_precision", "ari_transferred", "ari_all")


class RunReadError(VireidError):
    """A folder given to `vireid report` is not a finished run, or one of its files is unreadable."""


@dataclass
class RunRecord:
    """What a report shows of one run folder."""

    path: Path
    config: dict[str, Any]  # flattened: "cmc.lr" -> 0.0001
    final: dict[str, dict]  # protocol -> metrics (fractions)
    events: list[dict[str, Any]]
    demo_summary: dict[str, Any] | None = None
    pictures: list[Path] = field(default_factory=list)
    chance: dict[str, float] = field(default_factory=dict)  # protocol -> Rank-1 of a random ranking

    @property
    def headline(self) -> str:
        """The protocol a one-number comparison uses: the first one evaluated (SYSU: all-single)."""
        return next(iter(self.final), "")


def _load(path: Path, parse, what: str) -> Any:
    try:
        return parse(path)
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise RunReadError(f"{path} cannot be read as {what} ({type(err).__name__}: {err}); "
                           "is the run folder complete?") from None


def read_run(path: str | Path) -> RunRecord:
    """Read a finished run folder; a missing folder or file is one RunReadError naming it."""
    path = Path(path)
    if not path.is_dir():
        raise RunReadError(f"run folder {path} does not exist (give folders that `vireid train` or "
                           "`vireid demo` wrote)")
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        hint = ("the run has not finished: wait for it or continue it with --resume"
                if "final_metrics.json" in missing and len(missing) == 1 else "is it a vireid run folder?")
        raise RunReadError(f"run folder {path} lacks {', '.join(missing)} ({hint})")
    config = _load(path / "config.yaml", lambda p: yaml.safe_load(p.read_text(encoding="utf-8")) or {}, "YAML")
    final = _load(path / "final_metrics.json", lambda p: json.loads(p.read_text(encoding="utf-8")), "JSON")
    events = _load(path / "metrics.jsonl", read_events, "JSON lines")
    summary_path = path / "demo_summary.json"
    demo = _load(summary_path, lambda p: json.loads(p.read_text(encoding="utf-8")), "JSON") \
        if summary_path.is_file() else None
    if not isinstance(final, dict) or not all(isinstance(v, dict) for v in final.values()):
        raise RunReadError(f"{path / 'final_metrics.json'} does not map protocols to metrics")
    record = RunRecord(path, flatten_config(config if isinstance(config, dict) else {}), final or {},
                       latest_events(events), demo, run_pictures(path))
    record.chance = chance_rank1(record)
    return record


def run_pictures(path: Path) -> list[Path]:
    """The PNGs in plots/ other than the training curves (the report redraws those)."""
    found = {p.name: p for p in sorted((path / "plots").glob("*.png")) if not p.name.startswith("curves_")}
    ordered = [found.pop(name) for name in PICTURE_ORDER if name in found]
    return ordered + list(found.values())


def chance_rank1(run: RunRecord) -> dict[str, float]:
    """protocol -> expected Rank-1 of a random ranking, when the run says it or its dataset can be opened.

    demo_summary.json may carry ``"chance_rank1": {protocol: value}``; otherwise the dataset named in
    config.yaml is opened (`dataset_chance_rank1`). An unreadable dataset gives {}.
    """
    given = (run.demo_summary or {}).get("chance_rank1")
    if isinstance(given, dict):
        return {str(k): float(v) for k, v in given.items()}
    name, root = run.config.get("data.dataset"), run.config.get("data.root")
    if not name or not root or not Path(str(root)).expanduser().is_dir():
        return {}
    try:
        from vireid.data.registry import open_dataset

        dataset = open_dataset(name, Path(str(root)).expanduser(), trial=int(run.config.get("data.trial") or 1))
        return dataset_chance_rank1(dataset)
    except (VireidError, OSError, ValueError):
        return {}


def dataset_chance_rank1(dataset: Any) -> dict[str, float]:
    """protocol -> expected Rank-1 of a random ranking on the dataset's first gallery draw (a reader
    with `evaluation_splits`): the mean over queries of (gallery images of its identity) / (gallery size)."""
    splits = dataset.evaluation_splits(trials=1)
    return {protocol: _random_rank1(*pairs[0]) for protocol, pairs in splits.items() if pairs}


def _random_rank1(query: list, gallery: list) -> float:
    from collections import Counter

    if not query or not gallery:
        return 0.0
    count = Counter(s.pid for s in gallery)
    return sum(count[s.pid] for s in query) / (len(query) * len(gallery))


def stage_summary(run: RunRecord) -> dict[str, dict[str, float]]:
    """stage -> {rank1, mAP, ARIs, cross-modality numbers} in STAGE_ORDER.

    From demo_summary.json when the run has one (it adds the start weights and re-clusters with
    each stage's final model); otherwise from metrics.jsonl: each stage's end-of-stage evaluation on
    the headline protocol, the clustering measured at its last epoch, and MMLM's event.
    """
    rows = _summary_from_demo(run.demo_summary) if run.demo_summary else _summary_from_events(run)
    return {stage: rows[stage] for stage in STAGE_ORDER if rows.get(stage)}


def _summary_from_demo(demo: dict[str, Any]) -> dict[str, dict[str, float]]:
    return {stage: {k: float(v) for k, v in values.items() if k in SUMMARY_KEYS and _number(v)}
            for stage, values in demo.items() if isinstance(values, dict)}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _summary_from_events(run: RunRecord) -> dict[str, dict[str, float]]:
    rows: dict[str, dict[str, float]] = {}
    for event in run.events:
        stage = event.get("stage")
        if event.get("event") == "eval" and event.get("epoch") is None and event.get("protocol") == run.headline:
            rows.setdefault(stage, {}).update({k: float(event[k]) for k in ("rank1", "mAP") if _number(event.get(k))})
        elif event.get("event") == "epoch":  # later epochs overwrite: the last clustering counts
            rows.setdefault(stage, {}).update({k: float(v) for k, v in event.items()
                                               if k in SUMMARY_KEYS and _number(v)})
    mmlm = mmlm_event(run.events)
    if mmlm is not None:
        rows["mmlm"] = {k: float(v) for k, v in mmlm.items() if k in SUMMARY_KEYS and _number(v)}
    return rows


def config_differences(reference: RunRecord, run: RunRecord, ignore: tuple[str, ...] = ("output",)
                       ) -> list[tuple[str, Any, Any]]:
    """(key, reference value, this run's value) for every setting that differs; missing = None."""
    keys = sorted(set(reference.config) | set(run.config))
    return [(k, reference.config.get(k), run.config.get(k)) for k in keys
            if k not in ignore and reference.config.get(k) != run.config.get(k)]
