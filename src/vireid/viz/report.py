"""`vireid report`: one self-contained HTML page that explains and compares finished runs.

The page needs nothing but a browser: every picture is a PNG embedded as base64, the style sheet is
inline, and there is no script. Per run: its settings that differ from the first run's, the final
metrics, the stage summary, the training curves (`curves.py`) and the pictures the run drew into
plots/ (t-SNE, ranked lists, CMC). Across runs: Rank-1 / mAP per run against the chance level, and
the key curves of every run overlaid.
"""

from __future__ import annotations

import base64
import html
import io
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

from matplotlib.figure import Figure

from vireid.viz.curves import (STAGE_TITLES, Panel, Series, draw_marks, epoch_series, evaluation_points,
                               phase_starts, stage_epochs, stage_figure, stage_panels, training_stages)
from vireid.viz.runs import (RunRecord, RunReadError, config_differences, read_run, stage_summary,
                             PICTURE_CAPTIONS)

# Sections every run gets, in page order: (anchor suffix, heading).
RUN_SECTIONS = (("config", "Config differences"), ("final", "Final metrics"), ("stages", "Stage summary"),
                ("curves", "Training curves"), ("pictures", "Pictures"))
FINAL_COLUMNS = (("Rank-1", "rank1"), ("Rank-5", "rank5"), ("Rank-10", "rank10"), ("Rank-20", "rank20"),
                 ("mAP", "mAP"), ("mINP", "mINP"))
SUMMARY_COLUMNS = (("Rank-1", "rank1", True), ("mAP", "mAP", True), ("ARI visible", "ari_visible", False),
                   ("ARI infrared", "ari_infrared", False), ("ARI mixed", "ari_mixed", False),
                   ("mixed clusters with both modalities", "mixed_cross_modal_clusters", False),
                   ("… agreeing on the identity", "mixed_cross_modal_correct", False),
                   ("MMLM pair precision", "pair_precision", False),
                   ("transferred-label ARI", "ari_transferred", False), ("shared-label ARI", "ari_all", False))
# Settings named under the reference run, so a reader knows what it was without opening config.yaml.
KEY_SETTINGS = ("data.dataset", "model.arch", "model.pretrained", "cmc.phase1_epochs", "cmc.phase2_epochs",
                "cmc.iterations", "cmc.lr", "mmlm.enabled", "mmlm.n_memories", "sca.epochs", "sca.lr", "sca.intra",
                "sca.inter", "seed")
STAGE_NAMES = {"start": "start weights", "cmc": "after CMC", "mmlm": "MMLM (on the CMC model)",
               "sca": "after SCA", "final": "final"}

STYLE = """
body { font-family: -apple-system, "Segoe UI", "DejaVu Sans", Arial, sans-serif; margin: 0 auto;
       max-width: 1240px; padding: 16px 24px; color: #1d1d1f; line-height: 1.4; }
h1 { font-size: 26px; margin: 8px 0 4px; }
h2 { font-size: 21px; margin-top: 36px; padding-bottom: 4px; border-bottom: 2px solid #4a6fa5; }
h3 { font-size: 16px; margin: 22px 0 8px; color: #34495e; }
p.note, p.path { color: #555; font-size: 13px; margin: 4px 0; }
code, .path { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12.5px; }
nav { font-size: 14px; margin: 8px 0 0; }
nav a { margin-right: 14px; }
table { border-collapse: collapse; font-size: 13.5px; margin: 6px 0; }
th, td { border: 1px solid #d0d7de; padding: 4px 9px; }
th { background: #eef2f7; font-weight: 600; text-align: center; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.best { font-weight: 700; background: #e6f4ea; }
tr.headline td { background: #fff8e1; }
img { max-width: 100%; height: auto; display: block; border: 1px solid #e3e3e3; }
img.curves { width: 100%; }
figure { margin: 10px 0 18px; }
figcaption { font-size: 13px; color: #555; margin-top: 3px; }
.pictures { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.pictures figure { margin: 0; max-width: 100%; }
"""


# ---------------------------------------------------------------------------- small HTML helpers
def _png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _img(png: bytes, alt: str, caption: str | None = None, width: int | None = None, css_class: str = "") -> str:
    attrs = (f' style="width:{width}px"' if width else "") + (f' class="{css_class}"' if css_class else "")
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{_png_data_uri(png)}" alt="{html.escape(alt)}"{attrs}>{cap}</figure>'


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], row_classes: Sequence[str] = ()) -> str:
    """Cells are HTML already (escaped by the caller)."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{row_classes[i]}"' if i < len(row_classes) and row_classes[i] else ""
        body.append(f"<tr{cls}>" + "".join(row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _num(value: Any, percent: bool = False) -> str:
    """A right-aligned cell: percent with two decimals, counts as integers, other numbers with three."""
    if value is None:
        return '<td class="num">–</td>'
    if percent:
        return f'<td class="num">{100 * float(value):.2f}</td>'
    if float(value).is_integer():
        return f'<td class="num">{int(value)}</td>'
    return f'<td class="num">{float(value):.3f}</td>'


def _text(value: Any) -> str:
    return f"<td>{html.escape(str(value))}</td>"


# ---------------------------------------------------------------------------- names
def run_labels(paths: Sequence[Path]) -> list[str]:
    """Short unique names: the folder's name, with as many parent folders as needed to tell them apart."""
    parts = [Path(p).resolve().parts for p in paths]
    depth = 1
    while depth < max(len(p) for p in parts):
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
        depth += 1
    return [str(p) for p in paths]


# ---------------------------------------------------------------------------- per-run sections
def config_section(run: RunRecord, reference: RunRecord, is_reference: bool) -> str:
    """The settings that differ from the reference run; for the reference itself, its key settings."""
    if is_reference:
        listed = ", ".join(f"<code>{html.escape(k)}={html.escape(str(run.config[k]))}</code>"
                           for k in KEY_SETTINGS if k in run.config)
        return (f'<p class="note">Reference run: the other runs list their differences from it '
                f'({len(run.config)} settings in <code>config.yaml</code>). Key settings: {listed}</p>')
    diffs = config_differences(reference, run)
    if not diffs:
        return '<p class="note">Same settings as the reference run (run 1), apart from the output folder.</p>'
    rows = [[f"<td><code>{html.escape(k)}</code></td>", _text(a), _text(b)] for k, a, b in diffs]
    return _table(["setting", "run 1", "this run"], rows)


def final_section(run: RunRecord) -> str:
    """final_metrics.json as a table, one protocol a row, the headline protocol highlighted."""
    rows, classes = [], []
    for protocol, metrics in run.final.items():
        rows.append([_text(protocol)] + [_num(metrics.get(key), percent=True) for _, key in FINAL_COLUMNS]
                    + [_num(len(metrics["trials"])) if "trials" in metrics else _num(None)]
                    + [_num(run.chance.get(protocol), percent=True)])
        classes.append("headline" if protocol == run.headline else "")
    header = ["protocol"] + [f"{t} (%)" for t, _ in FINAL_COLUMNS] + ["trials", "chance Rank-1 (%)"]
    return _table(header, rows, classes)


def summary_section(run: RunRecord) -> str:
    """Per stage: Rank-1 / mAP, clustering ARIs and the cross-modality numbers (`stage_summary`)."""
    summary = stage_summary(run)
    if not summary:
        return '<p class="note">No stage was evaluated in this run.</p>'
    columns = [c for c in SUMMARY_COLUMNS if any(c[1] in row for row in summary.values())]
    rows = [[_text(STAGE_NAMES.get(stage, stage))] + [_num(row.get(key), percent=pct) for _, key, pct in columns]
            for stage, row in summary.items()]
    header = ["stage"] + [f"{t} (%)" if pct else t for t, _, pct in columns]
    source = ("<code>demo_summary.json</code> (clustering measured with each stage's final model)"
              if run.demo_summary else "<code>metrics.jsonl</code> (evaluation after each stage on "
              f"{html.escape(run.headline)}; clustering at the stage's last epoch)")
    return _table(header, rows) + f'<p class="note">From {source}. ARI: adjusted Rand index of the pseudo-labels ' \
        "against the true identities (used only for this report).</p>"


def curves_section(run: RunRecord) -> str:
    """One figure of grouped panels per training stage, redrawn from metrics.jsonl."""
    stages = training_stages(run.events)
    if not stages:
        return '<p class="note">This run logged no training epoch.</p>'
    mmlm_stage = "cmc" if "cmc" in stages else stages[0]
    parts = []
    for stage in stages:
        panels = stage_panels(run.events, stage, run.chance, with_mmlm=stage == mmlm_stage)
        fig = stage_figure(panels, STAGE_TITLES.get(stage, stage), phase_starts(run.events, stage))
        parts.append(_img(figure_png(fig), f"training curves of the {stage} stage", css_class="curves"))
    note = ('<p class="note">x: the stage\'s epochs (1-based; CMC counts both phases). Evaluation points sit '
            "after the epoch they followed; stars: MMLM's matching of the CMC model's clusters. "
            "Dotted: Rank-1 of a random ranking.</p>")
    return note + "".join(parts)


def pictures_section(run: RunRecord) -> str:
    """The PNGs the run drew into plots/ (t-SNE side by side, ranked lists, CMC)."""
    if not run.pictures:
        return '<p class="note">No pictures in <code>plots/</code> (the demo draws t-SNE and ranked lists).</p>'
    figures = []
    for path in run.pictures:
        width = 430 if path.name.startswith("tsne") or path.name == "cmc.png" else None
        figures.append(_img(path.read_bytes(), path.stem, PICTURE_CAPTIONS.get(path.name, f"plots/{path.name}"),
                            width))
    return '<div class="pictures">' + "".join(figures) + "</div>"


def run_section(index: int, label: str, run: RunRecord, reference: RunRecord) -> str:
    """Everything about one run, under anchors run-<i> and run-<i>-<section>."""
    bodies = {"config": config_section(run, reference, index == 1), "final": final_section(run),
              "stages": summary_section(run), "curves": curves_section(run), "pictures": pictures_section(run)}
    parts = [f'<section class="run" id="run-{index}">',
             f"<h2>Run {index}: {html.escape(label)}</h2>",
             f'<p class="path">{html.escape(str(run.path))}</p>']
    for key, heading in RUN_SECTIONS:
        parts.append(f'<h3 id="run-{index}-{key}">{heading}</h3>{bodies[key]}')
    parts.append("</section>")
    return "\n".join(parts)


# ---------------------------------------------------------------------------- across runs
def comparison_bars(runs: Sequence[RunRecord], labels: Sequence[str]) -> Figure:
    """Grouped bars: Rank-1 and mAP (headline protocol, %) per run, the chance Rank-1 as a dotted line."""
    fig = Figure(figsize=(max(5.0, 1.6 * len(runs) + 2.5), 3.6), layout="constrained")
    ax = fig.add_subplot()
    width = 0.38
    for i, run in enumerate(runs):
        metrics = run.final.get(run.headline, {})
        for offset, (key, colour, name) in zip((-width / 2, width / 2),
                                               (("rank1", "#4a6fa5", "Rank-1"), ("mAP", "#e39b3b", "mAP"))):
            value = 100 * float(metrics.get(key, 0.0))
            ax.bar(i + offset, value, width, color=colour, label=name if i == 0 else None)
            ax.text(i + offset, value, f"{value:.1f}", ha="center", va="bottom", fontsize=8,
                    bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
        chance = run.chance.get(run.headline)
        if chance is not None:
            ax.plot([i - 0.45, i + 0.45], [100 * chance] * 2, color="0.25", linestyle=":", linewidth=1.6,
                    label="chance Rank-1" if i == 0 else None)
    ax.set_xticks(range(len(runs)), [f"{i + 1}: {label}" for i, label in enumerate(labels)], fontsize=8)
    ax.set_ylabel(f"% ({runs[0].headline})" if runs else "%")
    ax.set_title("final Rank-1 and mAP per run", fontsize=11)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _run_rank1_series(run: RunRecord, label: str, colour: str) -> Series | None:
    """Headline Rank-1 at every evaluation on one axis: CMC's epochs, then SCA's after them (start = 0)."""
    xs, ys = [], []
    if run.demo_summary and "start" in run.demo_summary and "rank1" in run.demo_summary["start"]:
        xs.append(0.0)
        ys.append(100 * float(run.demo_summary["start"]["rank1"]))
    offset = 0.0
    for stage in training_stages(run.events):
        points = evaluation_points(run.events, stage).get(run.headline, {}).get("rank1")
        if points:
            xs += [x + offset for x in points[0]]
            ys += [100 * y for y in points[1]]
        epochs = stage_epochs(run.events, stage)
        offset += max(epochs) + 1 if epochs else 0
    return Series(label, xs, ys, colour=colour) if xs else None


def overlay_panels(runs: Sequence[RunRecord], labels: Sequence[str]) -> list[Panel]:
    """Key curves of every run in one colour per run: Rank-1 over training, CMC's mixed clusters with
    both modalities, CMC's clustering ARI, and each stage's total loss."""
    colours = [f"C{i % 10}" for i in range(len(runs))]
    rank1 = [s for s in (_run_rank1_series(r, f"{i + 1}: {lab}", c)
                         for i, (r, lab, c) in enumerate(zip(runs, labels, colours))) if s is not None]
    panels = [Panel("Rank-1 at each evaluation (CMC epochs, then SCA's)", "%", rank1)] if rank1 else []
    wanted = (("cmc", ("mixed_cross_modal_clusters",), "CMC: mixed clusters with both modalities", "clusters"),
              ("cmc", ("ari_visible", "ari_infrared"), "CMC: ARI (solid visible, dashed infrared)", "ARI"),
              ("cmc", ("loss",), "CMC: loss", "loss"), ("sca", ("loss",), "SCA: loss", "loss"))
    for stage, keys, title, ylabel in wanted:
        series = []
        for i, (run, label, colour) in enumerate(zip(runs, labels, colours)):
            named = epoch_series(run.events, stage)
            series += [Series(f"{i + 1}: {label}" if j == 0 else f"{i + 1}: {key}", *named[key], dashed=j > 0,
                              colour=colour, in_legend=j == 0) for j, key in enumerate(keys) if key in named]
        if series:
            values = [v for s in series for v in s.y]
            panels.append(Panel(title, ylabel, series, log_y=min(values) > 0 and max(values) / min(values) > 100,
                                unit_range=ylabel == "ARI", from_zero=ylabel == "clusters"))
    return panels


def stage_starts(run: RunRecord) -> dict[float, str]:
    """x -> "<stage> starts" on the axis of `_run_rank1_series`, for every stage after the first."""
    marks, offset = {}, 0.0
    for i, stage in enumerate(training_stages(run.events)):
        if i:
            marks[offset + 1] = f"{stage.upper()} starts"
        epochs = stage_epochs(run.events, stage)
        offset += max(epochs) + 1 if epochs else 0
    return marks


def overview_section(runs: Sequence[RunRecord], labels: Sequence[str]) -> str:
    """Headline numbers of every run, the bar chart, and (from two runs on) the overlaid key curves."""
    rows, best = [], max(float(r.final.get(r.headline, {}).get("rank1", 0.0)) for r in runs)
    for i, (run, label) in enumerate(zip(runs, labels)):
        m = run.final.get(run.headline, {})
        cell = _num(m.get("rank1"), percent=True)
        if len(runs) > 1 and m.get("rank1") == best:
            cell = cell.replace('class="num"', 'class="num best"')
        rows.append([_text(i + 1), f'<td><a href="#run-{i + 1}">{html.escape(label)}</a></td>', _text(run.headline),
                     cell, _num(m.get("mAP"), percent=True), _num(run.chance.get(run.headline), percent=True)])
    parts = ['<section id="overview"><h2>Overview</h2>',
             _table(["run", "folder", "protocol", "Rank-1 (%)", "mAP (%)", "chance Rank-1 (%)"], rows),
             _img(figure_png(comparison_bars(runs, labels)), "Rank-1 and mAP per run")]
    panels = overlay_panels(runs, labels) if len(runs) > 1 else []
    if panels:
        parts.append("<h3 id=\"overview-curves\">Key curves of every run</h3>")
        marks = stage_starts(runs[0]) if panels[0].title.startswith("Rank-1") else {}
        fig = stage_figure(panels, "runs overlaid (one colour per run)", columns=3, shared_x=False)
        draw_marks(fig.axes[0], marks)
        parts.append(_img(figure_png(fig), "overlaid curves"))
    parts.append("</section>")
    return "\n".join(parts)


# ---------------------------------------------------------------------------- the page
def render_report(runs: Sequence[RunRecord], title: str = "vireid report") -> str:
    """The whole page as one HTML string."""
    labels = run_labels([r.path for r in runs])
    nav = " ".join(f'<a href="#run-{i + 1}">{i + 1}: {html.escape(label)}</a>' for i, label in enumerate(labels))
    made = time.strftime("%Y-%m-%d %H:%M")
    head = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head><body>')
    intro = (f"<h1>{html.escape(title)}</h1>"
             f'<p class="note">{len(runs)} run{"s" if len(runs) != 1 else ""}, written {made} by '
             "<code>vireid report</code>. Rank-1 / mAP in % on each run's first protocol unless a table says "
             f'otherwise.</p><nav><a href="#overview">overview</a> {nav}</nav>')
    body = [overview_section(runs, labels)]
    body += [run_section(i + 1, label, run, runs[0]) for i, (label, run) in enumerate(zip(labels, runs))]
    return head + intro + "\n".join(body) + "</body></html>\n"


def write_report(run_dirs: Sequence[str | Path], out_html: str | Path, title: str = "vireid report") -> Path:
    """Read each finished run folder and write one self-contained HTML page comparing them.

    A missing or unfinished folder raises RunReadError (a VireidError) naming it, before anything is written.
    """
    if not run_dirs:
        raise RunReadError("give at least one run folder")
    runs = [read_run(path) for path in run_dirs]
    out = Path(out_html)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_report(runs, title), encoding="utf-8")
    return out
