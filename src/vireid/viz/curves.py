"""Training curves that explain a run: per stage, a few panels grouped by what they mean.

metrics.jsonl holds three kinds of events (see engine/run.py): ``epoch`` (stage, 0-based epoch
index; CMC counts its epochs over both phases), ``eval`` (stage, protocol, and the epoch index after
which it ran, or None for the evaluation after the stage's last epoch) and ``mmlm`` (one per run).
Every curve here uses the stage's own 1-based epoch axis: the values logged for epoch index e sit at
x = e + 1, an evaluation after epoch index e at x = e + 1, and the end-of-stage evaluation at the
stage's last epoch. `stage_panels` computes what is drawn (pure, tested); `plot_training_curves`
draws it.
"""

from __future__ import annotations

import json
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from matplotlib.figure import Figure

# Headline evaluation metrics drawn per protocol (the others are in the report's tables).
EVAL_METRICS = (("rank1", "Rank-1"), ("mAP", "mAP"))
# Logged values that are constants or bookkeeping: never a panel of their own.
OMITTED_KEYS = {"lr", "iterations", "phase", "enabled", "rounds", "pairs", "num_pairs"}
# MMLM's cross-modality numbers (one per run), drawn as markers after the CMC stage.
MMLM_KEYS = (("pair_precision", "MMLM pair precision"), ("ari_transferred", "MMLM transferred-label ARI"),
             ("ari_all", "shared-label ARI (MMLM)"))
# CMC's sub-timings of one clustering: part of seconds_cluster, not drawn twice.
SUB_TIMINGS = {"seconds_cluster_visible", "seconds_cluster_infrared"}
# A legend with a label longer than this (characters) would cover much of a panel: it goes under the axes.
LONG_LABEL = 30
# Legend names where the key alone would mislead.
LABELS = {"loss": "loss (total)", "ce_visible": "CE of the confidence pass, visible",
          "ce_infrared": "CE of the confidence pass, infrared"}


@dataclass
class Series:
    """One line (or a few markers) of a panel; x on the stage's 1-based epoch axis."""

    label: str
    x: list[float]
    y: list[float]
    dashed: bool = False
    markers_only: bool = False
    colour: str | None = None  # None: by modality (visible blue, infrared red, mixed green), else the next free
    in_legend: bool = True


@dataclass
class Panel:
    """One axes: a title, a y label, its series and horizontal reference lines (label -> y, colour)."""

    title: str
    ylabel: str
    series: list[Series]
    references: dict[str, tuple[float, str]] = field(default_factory=dict)
    log_y: bool = False
    unit_range: bool = False  # fractions and ARIs: y from 0 (or below) to 1, comparable between runs
    from_zero: bool = False  # counts and seconds: y from 0


# ---------------------------------------------------------------------------- reading events
def read_events(path: str | Path) -> list[dict[str, Any]]:
    """All events of a metrics.jsonl file, in order."""
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def latest_events(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events with repeats dropped: a resumed run logs again the epochs after its last checkpoint,
    so of each (event, stage, epoch, protocol) only the last one logged is kept, at its position."""
    latest: dict[tuple, dict[str, Any]] = {}
    for event in events:
        key = (event.get("event"), event.get("stage"), event.get("epoch"), event.get("protocol"))
        latest.pop(key, None)
        latest[key] = event
    return list(latest.values())


def _numeric(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and value == value


def stage_epochs(events: list[dict[str, Any]], stage: str) -> list[int]:
    """Sorted 0-based epoch indices that `stage` logged an ``epoch`` event for."""
    return sorted({int(e["epoch"]) for e in events
                   if e.get("event") == "epoch" and e.get("stage") == stage and e.get("epoch") is not None})


def epoch_series(events: list[dict[str, Any]], stage: str) -> dict[str, tuple[list[float], list[float]]]:
    """name -> (x, y) of every numeric value `stage`'s epoch events logged; x = epoch index + 1."""
    out: dict[str, tuple[list[float], list[float]]] = {}
    rows = sorted((e for e in latest_events(events) if e.get("event") == "epoch" and e.get("stage") == stage
                   and e.get("epoch") is not None), key=lambda e: e["epoch"])
    for event in rows:
        for name, value in event.items():
            if name in ("event", "stage", "epoch", "step", "time") or not _numeric(value):
                continue
            xs, ys = out.setdefault(name, ([], []))
            xs.append(float(event["epoch"] + 1))
            ys.append(float(value))
    return out


def evaluation_x(epoch: int | None, epochs: list[int]) -> float:
    """Where an evaluation sits on its stage's 1-based epoch axis: after epoch index e at e + 1; the
    end-of-stage one (epoch None) at the last epoch, or at 0 when the stage logged no epoch."""
    if epoch is not None:
        return float(epoch + 1)
    return float(max(epochs) + 1) if epochs else 0.0


def evaluation_points(events: list[dict[str, Any]], stage: str
                      ) -> dict[str, dict[str, tuple[list[float], list[float]]]]:
    """protocol -> metric (rank1, mAP) -> (x, y) of `stage`'s evaluations, sorted by x."""
    epochs = stage_epochs(events, stage)
    points: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for event in latest_events(events):
        if event.get("event") != "eval" or event.get("stage") != stage:
            continue
        x = evaluation_x(event.get("epoch"), epochs)
        for metric, _ in EVAL_METRICS:
            if _numeric(event.get(metric)):
                points.setdefault(str(event.get("protocol")), {}).setdefault(metric, []).append((x, event[metric]))
    return {protocol: {m: ([x for x, _ in sorted(p)], [y for _, y in sorted(p)]) for m, p in metrics.items()}
            for protocol, metrics in points.items()}


def mmlm_event(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The run's (last) MMLM event, if it has one."""
    found = [e for e in events if e.get("event") == "mmlm"]
    return found[-1] if found else None


def phase_starts(events: list[dict[str, Any]], stage: str) -> dict[float, str]:
    """x (1-based epoch) -> "phase N" where a CMC phase after the first begins."""
    rows = sorted((e for e in latest_events(events) if e.get("event") == "epoch" and e.get("stage") == stage
                   and e.get("epoch") is not None and "phase" in e), key=lambda e: e["epoch"])
    return {float(b["epoch"] + 1): f"phase {b['phase']}" for a, b in zip(rows, rows[1:]) if b["phase"] != a["phase"]}


# ---------------------------------------------------------------------------- grouping into panels
MODALITY_COLOURS = {"visible": "#1f77b4", "infrared": "#d62728", "mixed": "#2ca02c"}  # as in the t-SNE
OTHER_COLOURS = ("#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def _pick(named: dict[str, tuple[list[float], list[float]]], keep: Callable[[str], bool],
          labels: dict[str, str] | None = None) -> list[Series]:
    """Series of the keys `keep` accepts, sorted; outlier counts dashed."""
    labels = labels or {}
    return [Series(labels.get(k, k.replace("_", " ")), *named[k], dashed=k.startswith(("outliers_", "ce_")),
                   colour="#222222" if k == "loss" else MODALITY_COLOURS.get(k.rsplit("_", 1)[-1]))
            for k in sorted(named) if keep(k)]


def _log_scale(series: list[Series]) -> bool:
    """True when positive values span more than two decades (SCA's intra term next to its CE)."""
    values = [v for s in series for v in s.y]
    return bool(values) and min(values) > 0 and max(values) / min(values) > 100


EVAL_COLOURS = ("#222222", "#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#17becf")


def _evaluation_panels(events: list[dict[str, Any]], stage: str, chance: dict[str, float]) -> list[Panel]:
    """Rank-1 (with each protocol's chance level, dotted) and mAP, one colour per protocol."""
    points = evaluation_points(events, stage)
    colours = {p: EVAL_COLOURS[i % len(EVAL_COLOURS)] for i, p in enumerate(points)}
    panels = []
    for metric, label in EVAL_METRICS:
        series = []
        for protocol, metrics in points.items():
            if metric in metrics:
                xs, ys = metrics[metric]
                series.append(Series(protocol, xs, [100 * y for y in ys], colour=colours[protocol]))
        references = {f"chance {protocol}": (100 * chance[protocol], colours[protocol])
                      for protocol in points if metric == "rank1" and protocol in chance}
        title = f"evaluation: {label}" + (" (dotted: chance)" if references else "")
        if series:
            panels.append(Panel(title, "%", series, references))
    return panels


def _cross_modal_panels(named, mmlm: dict[str, Any] | None, mmlm_x: float) -> list[Panel]:
    panels = []
    if "mixed_cross_modal_clusters" in named:
        series = _pick(named, lambda k: k == "mixed_cross_modal_clusters",
                       {"mixed_cross_modal_clusters": "mixed clusters holding both modalities"})
        if "clusters_mixed" in named:
            series.append(Series("all mixed clusters", *named["clusters_mixed"], dashed=True))
        panels.append(Panel("mixed clusters holding both modalities", "clusters", series, from_zero=True))
    agreement = _pick(named, lambda k: k == "mixed_cross_modal_correct",
                      {"mixed_cross_modal_correct": "both-modality clusters whose modalities agree on the identity"})
    if mmlm is not None:
        agreement += [Series(label, [mmlm_x], [float(mmlm[key])], markers_only=True)
                      for key, label in MMLM_KEYS if _numeric(mmlm.get(key))]
    if agreement:
        panels.append(Panel("cross-modality agreement", "fraction", agreement, unit_range=True))
    return panels


def stage_panels(events: list[dict[str, Any]], stage: str, chance: dict[str, float] | None = None,
                 with_mmlm: bool = False) -> list[Panel]:
    """What `plot_training_curves` draws for one stage, in reading order: evaluation, cross-modality
    (mixed clusters holding both modalities, their agreement, MMLM's numbers when `with_mmlm`),
    losses, clustering ARI, cluster counts, label confidence, time per epoch, anything else logged.
    Constants and bookkeeping (lr, iterations, phase) are left out."""
    events = latest_events(events)
    named = epoch_series(events, stage)
    epochs = stage_epochs(events, stage)
    panels = _evaluation_panels(events, stage, chance or {})
    mmlm = mmlm_event(events) if with_mmlm else None
    mmlm_x = evaluation_x(None, epochs) if stage == "cmc" else 0.0  # MMLM runs on CMC's last model
    panels += _cross_modal_panels(named, mmlm, mmlm_x)
    # (title, y label, which keys, y from 0 to 1, log scale allowed)
    groups: list[tuple[str, str, Callable[[str], bool], bool, bool]] = [
        ("losses (mean over the epoch)", "loss", lambda k: k == "loss" or k.startswith(("loss_", "ce_")), False, True),
        ("clustering ARI vs true identities", "ARI", lambda k: k.startswith("ari_"), True, False),
        ("clusters (solid) and outliers (dashed)", "count", lambda k: k.startswith(("clusters_", "outliers_")),
         False, False),
        ("label confidence (GMM)", "mean confidence", lambda k: k.startswith("confidence_"), True, False),
        ("time per epoch", "seconds", lambda k: k.startswith("seconds_") and k not in SUB_TIMINGS, False, False),
    ]
    used = {"mixed_cross_modal_clusters", "mixed_cross_modal_correct"} | OMITTED_KEYS | SUB_TIMINGS
    for title, ylabel, keep, unit, log in groups:
        series = _pick(named, keep, LABELS)
        used |= {k for k in named if keep(k)}
        if series:
            panels.append(Panel(title, ylabel, series, log_y=log and _log_scale(series), unit_range=unit,
                                from_zero=ylabel in ("count", "seconds")))
    other = _pick(named, lambda k: k not in used)
    if other:
        panels.append(Panel("other logged values", "value", other))
    return panels


def training_stages(events: list[dict[str, Any]]) -> list[str]:
    """Stages that logged epochs, in the order they first appear."""
    seen: dict[str, None] = {}
    for event in events:
        if event.get("event") == "epoch" and event.get("stage"):
            seen.setdefault(event["stage"], None)
    return list(seen)


# ---------------------------------------------------------------------------- drawing
def draw_panel(ax: Any, panel: Panel, marks: dict[float, str] | None = None,
               xlim: tuple[float, float] | None = None) -> None:
    """Draw one panel into a matplotlib axes (shared by the per-run and the across-run figures);
    `marks` are x -> label of what starts there (a vertical line half an epoch before)."""
    free = iter(OTHER_COLOURS * 4)
    for s in panel.series:
        colour = s.colour or next(free)
        label = s.label if s.in_legend else "_" + s.label
        if s.markers_only:
            ax.plot(s.x, s.y, linestyle="none", marker="*", markersize=12, color=colour, label=label)
        else:
            ax.plot(s.x, s.y, linestyle="--" if s.dashed else "-", marker="o", markersize=3.5, color=colour,
                    label=label)
    for y, colour in panel.references.values():
        ax.axhline(y, color=colour, linestyle=":", linewidth=1.4)
    draw_marks(ax, marks or {})
    if panel.log_y:
        ax.set_yscale("log")
    if panel.unit_range:
        low = min([0.0] + [v for s in panel.series for v in s.y])
        ax.set_ylim(low - 0.03, 1.03)
    elif panel.from_zero and not panel.log_y:
        top = max(ax.get_ylim()[1], 1.0)
        ax.set_ylim(-0.04 * top, top)
    if xlim is not None:
        ax.set_xlim(*xlim)
    ax.set_title(panel.title, fontsize=10)
    ax.set_ylabel(panel.ylabel, fontsize=8)
    ax.set_xlabel("epoch", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    entries = sum(s.in_legend for s in panel.series)
    longest = max((len(s.label) for s in panel.series if s.in_legend), default=0)
    if entries > 4 or longest > LONG_LABEL:  # a long legend goes under the axes, where it hides no line
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=1 if longest > LONG_LABEL else 2,
                  frameon=False)
    else:
        ax.legend(fontsize=7, loc="best", framealpha=0.8)


def draw_marks(ax: Any, marks: dict[float, str]) -> None:
    """A vertical line half an epoch before each x where something starts, with its label."""
    for x, text in marks.items():
        ax.axvline(x - 0.5, color="0.6", linewidth=1, linestyle="-.")
        ax.text(x - 0.42, 0.02, text, transform=ax.get_xaxis_transform(), fontsize=7, color="0.4")


def common_xlim(panels: list[Panel]) -> tuple[float, float] | None:
    """One x range for every panel of a figure, half an epoch beyond the first and last points."""
    xs = [x for p in panels for s in p.series for x in s.x]
    return (min(xs) - 0.5, max(xs) + 0.5) if xs else None


def stage_figure(panels: list[Panel], title: str, marks: dict[float, str] | None = None,
                 columns: int | None = None, shared_x: bool = True) -> Figure:
    """A figure of panels on a grid `columns` wide (default 4), all on one x range unless `shared_x`
    is False."""
    columns = columns or 4
    columns = max(1, min(columns, len(panels)))
    rows = -(-len(panels) // columns)
    fig = Figure(figsize=(3.7 * columns, 2.9 * rows + 0.4), layout="constrained")
    xlim = common_xlim(panels) if shared_x else None
    for i, panel in enumerate(panels):
        draw_panel(fig.add_subplot(rows, columns, i + 1), panel, marks, xlim)
    fig.suptitle(title, fontsize=12, fontweight="bold")
    return fig


STAGE_TITLES = {"cmc": "CMC stage (cross-modality clustering + cluster contrast)",
                "sca": "SCA stage (soft cluster-level alignment)"}


def plot_training_curves(metrics_jsonl_path: str | Path, out_dir: str | Path,
                         chance: dict[str, float] | None = None) -> list[Path]:
    """One figure per training stage, ``<out_dir>/curves_<stage>.png``; returns the paths written.

    `chance` maps protocol -> Rank-1 of a random ranking (fraction), drawn as a reference line.
    MMLM's numbers are drawn after the CMC stage (or at the start of SCA when CMC did not run here).
    """
    events = latest_events(read_events(metrics_jsonl_path))
    stages = training_stages(events)
    mmlm_stage = "cmc" if "cmc" in stages else (stages[0] if stages else None)
    written = []
    for stage in stages:
        panels = stage_panels(events, stage, chance, with_mmlm=stage == mmlm_stage)
        fig = stage_figure(panels, STAGE_TITLES.get(stage, stage), phase_starts(events, stage))
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in stage)
        path = Path(out_dir) / f"curves_{safe}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
        written.append(path)
    return written
