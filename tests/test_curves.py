"""Training curves: every point sits on its stage's own 1-based epoch axis, panels group by meaning."""

from __future__ import annotations

import json

from PIL import Image

from vireid.viz import plot_training_curves
from vireid.viz.curves import evaluation_points, read_events, stage_panels


def _epoch(stage, epoch, **values):
    return {"event": "epoch", "stage": stage, "epoch": epoch, "time": 0.0, **values}


def _eval(stage, epoch, protocol, rank1, mAP):
    return {"event": "eval", "stage": stage, "epoch": epoch, "time": 0.0, "protocol": protocol,
            "rank1": rank1, "mAP": mAP, "rank5": 0.9}


def demo_like_events() -> list[dict]:
    """8 CMC epochs (4 per phase, counted over both), evaluated after epoch index 3 and after the
    stage; MMLM; 9 SCA epochs evaluated only after the stage. Positions in the file are far from the
    epochs (the old plot put SCA's evaluation at its line number, 22)."""
    events = []
    for e in range(8):
        phase = 1 if e < 4 else 2
        mixed = {"clusters_mixed": 50, "mixed_cross_modal_clusters": 4 + e, "mixed_cross_modal_correct": 0.5,
                 "ari_mixed": 0.2} if phase == 2 else {}
        events.append(_epoch("cmc", e, phase=phase, loss=5.0 - 0.1 * e, clusters_visible=40, clusters_infrared=30,
                             outliers_visible=3, ari_visible=0.6, ari_infrared=0.5, seconds_cluster=2.0,
                             seconds_cluster_visible=0.1, seconds_train=9.0, lr=1e-4, **mixed))
        if e == 3:
            events += [_eval("cmc", 3, p, 0.10, 0.12) for p in ("all-single", "indoor-single")]
    events += [_eval("cmc", None, p, 0.17, 0.20) for p in ("all-single", "indoor-single")]
    events.append({"event": "mmlm", "stage": "mmlm", "epoch": None, "time": 0.0, "pairs": 30, "pair_precision": 0.4,
                   "ari_transferred": 0.3, "ari_all": 0.25, "num_pairs": 30.0})
    for e in range(9):
        events.append(_epoch("sca", e, loss_wce=4.0, loss=4.0 + (1000.0 if e >= 2 else 0.0),
                             **({"loss_intra": 1000.0, "confidence_visible": 0.7} if e >= 2 else {}),
                             seconds_train=5.0, iterations=43, lr=0.01 * (e + 1)))
    events += [_eval("sca", None, p, 0.135, 0.15) for p in ("all-single", "indoor-single")]
    return events


def write_jsonl(path, events):
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


def test_evaluations_sit_after_the_epoch_they_followed(tmp_path):
    events = read_events(write_jsonl(tmp_path / "metrics.jsonl", demo_like_events()))
    cmc = evaluation_points(events, "cmc")
    # after epoch index 3 -> x = 4; after the stage (8 epochs over both phases) -> x = 8
    assert cmc["all-single"]["rank1"] == ([4.0, 8.0], [0.10, 0.17])
    assert cmc["indoor-single"]["mAP"] == ([4.0, 8.0], [0.12, 0.20])
    sca = evaluation_points(events, "sca")
    assert sca["all-single"]["rank1"] == ([9.0], [0.135])  # the last of 9 SCA epochs, not the line number


def test_a_stage_without_logged_epochs_puts_its_evaluation_at_zero():
    events = [_eval("cmc", None, "all-single", 0.05, 0.07)]  # e.g. clustering found nothing in epoch 1
    assert evaluation_points(events, "cmc")["all-single"]["rank1"] == ([0.0], [0.05])


def test_resumed_run_keeps_the_last_logging_of_an_epoch():
    events = [_epoch("sca", 0, loss=3.0), _epoch("sca", 1, loss=2.0),  # killed after logging epoch 1
              _epoch("sca", 1, loss=2.5), _epoch("sca", 2, loss=1.0),  # resumed from epoch 0's checkpoint
              _eval("sca", None, "all-single", 0.2, 0.3)]
    panels = {p.title: p for p in stage_panels(events, "sca")}
    loss = next(s for s in panels["losses (mean over the epoch)"].series if s.label == "loss (total)")
    assert (loss.x, loss.y) == ([1.0, 2.0, 3.0], [3.0, 2.5, 1.0])
    assert panels["evaluation: Rank-1"].series[0].x == [3.0]


def test_panels_group_by_meaning_and_leave_out_constants():
    events = demo_like_events()
    panels = stage_panels(events, "cmc", chance={"all-single": 0.025}, with_mmlm=True)
    titles = [p.title for p in panels]
    assert titles[:2] == ["evaluation: Rank-1 (dotted: chance)", "evaluation: mAP"]
    assert "mixed clusters holding both modalities" in titles
    drawn = {s.label for p in panels for s in p.series}
    assert not {"lr", "phase", "iterations", "seconds cluster visible"} & drawn
    assert "mixed clusters holding both modalities" in drawn and "ari visible" in drawn
    both = next(p for p in panels if p.title == "mixed clusters holding both modalities")
    assert both.series[0].x == [5.0, 6.0, 7.0, 8.0] and both.series[0].y == [8.0, 9.0, 10.0, 11.0]
    agreement = next(p for p in panels if p.title == "cross-modality agreement")
    stars = {s.label: (s.x, s.y) for s in agreement.series if s.markers_only}
    assert stars["MMLM pair precision"] == ([8.0], [0.4])  # MMLM matches the model after CMC's last epoch
    assert [(s.label, s.y) for s in panels[0].series] == [("all-single", [10.0, 17.0]), ("indoor-single", [10.0, 17.0])]
    assert [r[0] for r in panels[0].references.values()] == [2.5]  # only all-single's chance is known
    sca = {p.title: p for p in stage_panels(events, "sca")}
    assert sca["losses (mean over the epoch)"].log_y  # the intra term is 250x the CE: log scale
    assert "label confidence (GMM)" in sca


def test_training_curves_write_one_png_per_training_stage(tmp_path):
    metrics = write_jsonl(tmp_path / "metrics.jsonl", demo_like_events())
    paths = plot_training_curves(metrics, tmp_path / "plots", chance={"all-single": 0.025})
    assert [p.name for p in paths] == ["curves_cmc.png", "curves_sca.png"]
    for path in paths:
        with Image.open(path) as img:
            img.load()
            assert img.size[0] > 600 and img.size[1] > 300


def test_the_cross_modality_agreement_legend_sits_under_its_axes():
    # its labels are long ("both-modality clusters whose modalities agree on the identity"): inside the
    # axes the legend covered the top of the plot, where the fractions and MMLM's stars are
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from vireid.viz.curves import stage_figure

    fig = stage_figure(stage_panels(demo_like_events(), "cmc", with_mmlm=True), "CMC")
    FigureCanvasAgg(fig).draw()
    ax = next(a for a in fig.axes if a.get_title() == "cross-modality agreement")
    legend, axes = ax.get_legend().get_window_extent(), ax.get_window_extent()
    assert legend.y1 <= axes.y0, (legend, axes)  # display coordinates: y grows upwards
    short = next(a for a in fig.axes if a.get_title().startswith("evaluation: Rank-1"))
    assert short.get_legend().get_window_extent().overlaps(short.get_window_extent())  # short legends stay inside
