"""`vireid report`: one self-contained HTML page with every run and section; clear errors for bad folders.

The run folders here are written by hand the way a run writes them (config.yaml, metrics.jsonl,
final_metrics.json, plots/, and for a demo run demo_summary.json); tests/test_pipeline.py renders
the report of a real smoke run.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from test_curves import demo_like_events, write_jsonl
from vireid.cli import main
from vireid.viz.report import RUN_SECTIONS, run_labels, write_report
from vireid.viz.runs import RunReadError, _random_rank1, config_differences, read_run, stage_summary

PROTOCOLS = ("all-single", "all-multi", "indoor-single", "indoor-multi")


class PageStructure(HTMLParser):
    """Ids of elements, the sources of images, the text of h2 headings, and table cells."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.images: list[str] = []
        self.h2: list[str] = []
        self.cells: list[str] = []
        self.scripts = 0
        self.links: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.append(attrs["id"])
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if tag == "script":
            self.scripts += 1
        if tag in ("link", "a") and attrs.get("href"):
            self.links.append(attrs["href"])
        if tag in ("h2", "td"):
            self._in = tag
            (self.h2 if tag == "h2" else self.cells).append("")

    def handle_endtag(self, tag):
        if tag == self._in:
            self._in = None

    def handle_data(self, data):
        if self._in == "h2":
            self.h2[-1] += data
        elif self._in == "td":
            self.cells[-1] += data


def assert_report_structure(path: Path, n_runs: int) -> PageStructure:
    """Every run with every section, every image an embedded PNG that decodes, nothing fetched."""
    page = PageStructure()
    page.feed(Path(path).read_text(encoding="utf-8"))
    assert "overview" in page.ids
    for i in range(1, n_runs + 1):
        assert f"run-{i}" in page.ids
        for key, _ in RUN_SECTIONS:
            assert f"run-{i}-{key}" in page.ids
    assert sum(h.startswith("Run ") for h in page.h2) == n_runs
    assert page.scripts == 0
    assert all(link.startswith("#") for link in page.links)  # only links within the page
    assert page.images
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as img:
            img.load()
            assert img.size[0] >= 50 and img.size[1] >= 50
    return page


def _png(path: Path, colour=(90, 120, 200)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((80, 120, 3), colour, np.uint8)).save(path)


def fake_run(folder: Path, sca_inter: bool = True, demo: bool = False, rank1: float = 0.135) -> Path:
    """A run folder as `vireid train` (or, with `demo`, `vireid demo`) leaves it."""
    folder.mkdir(parents=True)
    config = {"seed": 0, "output": str(folder), "stages": ["cmc", "mmlm", "sca"],
              "data": {"dataset": "sysu", "root": str(folder.parent / "no-such-data"), "trial": 1},
              "model": {"arch": "resnet18", "pretrained": "synthetic"},
              "cmc": {"phase1_epochs": 4, "phase2_epochs": 4, "lr": 0.0001},
              "sca": {"epochs": 9, "inter": sca_inter, "intra": True}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    write_jsonl(folder / "metrics.jsonl", demo_like_events())
    final = {p: {"rank1": rank1, "rank5": 0.4, "rank10": 0.6, "rank20": 0.8, "mAP": 0.15, "mINP": 0.05,
                 "trials": [{}] * 10, "cmc": list(np.linspace(rank1, 1.0, 20))} for p in PROTOCOLS}
    (folder / "final_metrics.json").write_text(json.dumps(final))
    _png(folder / "plots" / "cmc.png")
    _png(folder / "plots" / "curves_cmc.png", (255, 0, 0))  # an old drawing: the report redraws curves
    if demo:
        _png(folder / "plots" / "tsne_start.png")
        _png(folder / "plots" / "tsne_final.png")
        _png(folder / "plots" / "ranked_lists.png")
        summary = {"start": {"rank1": 0.142, "mAP": 0.16, "ari_visible": 0.8, "ari_infrared": 0.5},
                   "cmc": {"rank1": 0.167, "mAP": 0.2, "ari_mixed": 0.3, "mixed_cross_modal_clusters": 10},
                   "sca": {"rank1": rank1, "mAP": 0.15},
                   "mmlm": {"pairs": 30, "pair_precision": 0.4, "ari_transferred": 0.3},
                   "seconds": 480.0, "chance_rank1": {"all-single": 0.025}}
        (folder / "demo_summary.json").write_text(json.dumps(summary))
    return folder


def make_two_runs(base: Path) -> list[Path]:
    return [fake_run(base / "runs" / "full", demo=True),
            fake_run(base / "runs" / "no-inter", sca_inter=False, rank1=0.10)]


@pytest.fixture
def two_runs(tmp_path):
    return make_two_runs(tmp_path)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Two runs and their report written once by `vireid report` (drawing takes seconds): paths, page, stdout."""
    base = tmp_path_factory.mktemp("report")
    runs = make_two_runs(base)
    out = base / "out" / "report.html"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["report", *map(str, runs), "--out", str(out)])
    assert code == 0
    return runs, out, stdout.getvalue()


def test_report_of_two_runs_has_every_run_section_and_picture(rendered):
    _, out, _ = rendered
    page = assert_report_structure(out, 2)
    # overview: bars + overlaid curves; run 1: 2 stage figures + tsne x2, ranked lists, cmc; run 2: 2 + cmc
    assert len(page.images) == 2 + 6 + 3
    assert page.h2 == ["Overview", "Run 1: full", "Run 2: no-inter"]
    html = out.read_text(encoding="utf-8")
    assert "http://" not in html and "https://" not in html


def test_report_lists_the_second_runs_setting_that_differs(rendered):
    page = assert_report_structure(rendered[1], 2)
    cells = page.cells
    i = cells.index("sca.inter")
    assert cells[i + 1: i + 3] == ["True", "False"]
    assert "output" not in cells  # the output folder always differs


def test_stage_summary_prefers_demo_summary_and_falls_back_to_metrics(two_runs):
    demo, plain = (read_run(p) for p in two_runs)
    assert list(stage_summary(demo)) == ["start", "cmc", "mmlm", "sca"]
    assert stage_summary(demo)["start"]["rank1"] == 0.142
    # from metrics.jsonl: end-of-stage evaluations on all-single, the last CMC clustering, MMLM's event
    rows = stage_summary(plain)
    assert list(rows) == ["cmc", "mmlm", "sca"]
    assert rows["cmc"]["rank1"] == 0.17 and rows["sca"]["mAP"] == 0.15
    assert rows["cmc"]["mixed_cross_modal_clusters"] == 11  # epoch index 7: 4 + 7
    assert rows["mmlm"]["pair_precision"] == 0.4


def test_chance_level_comes_from_the_demo_summary_or_is_unknown(two_runs):
    demo, plain = (read_run(p) for p in two_runs)
    assert demo.chance == {"all-single": 0.025}
    assert plain.chance == {}  # its data.root does not exist


def test_random_ranking_rank1_by_hand():
    class S:  # a sample with a pid
        def __init__(self, pid):
            self.pid = pid

    # queries of ids 1, 1, 2 against a gallery of ids 1, 2, 2, 3: (1/4 + 1/4 + 2/4) / 3
    assert _random_rank1([S(1), S(1), S(2)], [S(1), S(2), S(2), S(3)]) == pytest.approx(1 / 3)


def test_config_differences_name_missing_settings(two_runs):
    a, b = (read_run(p) for p in two_runs)
    b.config["cmc.new_setting"] = 3
    assert config_differences(a, b) == [("cmc.new_setting", None, 3), ("sca.inter", True, False)]


def test_run_labels_add_parent_folders_only_when_needed(tmp_path):
    assert run_labels([tmp_path / "a" / "demo", tmp_path / "b" / "demo"]) == ["a/demo", "b/demo"]
    assert run_labels([tmp_path / "a" / "x", tmp_path / "a" / "y"]) == ["x", "y"]


def test_cli_prints_the_pages_path(rendered):
    _, out, stdout = rendered
    assert stdout.strip() == f"wrote {out}"  # the CLI's one convention for files it wrote


@pytest.mark.parametrize("damage, expect", [
    (lambda run: (run / "final_metrics.json").unlink(), "has not finished"),
    (lambda run: (run / "config.yaml").unlink(), "lacks config.yaml"),
    (lambda run: (run / "metrics.jsonl").write_text('{"event": "epoch"\n'), "metrics.jsonl cannot be read"),
    (lambda run: (run / "final_metrics.json").write_text("[1, 2]"), "does not map protocols"),
])
def test_partial_run_folder_is_one_error_line_naming_it(two_runs, tmp_path, capsys, damage, expect):
    damage(two_runs[1])
    out = tmp_path / "report.html"
    with pytest.raises(RunReadError, match=expect):
        write_report(two_runs, out)
    assert main(["report", *map(str, two_runs), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(two_runs[1]) in err and "Traceback" not in err
    assert not out.exists()


def test_missing_folder_is_named(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "r.html")]) == 2
    assert f"run folder {tmp_path / 'nope'} does not exist" in capsys.readouterr().err


def test_chance_level_of_a_dataset_counts_the_gallery_images_of_each_query_identity():
    from types import SimpleNamespace as S

    class TwoProtocols:  # 'all': ids 1, 2 in a gallery of 4 images; 'indoor': only id 1's image
        def evaluation_splits(self, trials):
            query = [S(pid=1), S(pid=2)]
            return {"all": [(query, [S(pid=1), S(pid=2), S(pid=2), S(pid=3)])], "indoor": [(query, [S(pid=1)])]}

    from vireid.viz.runs import dataset_chance_rank1

    assert dataset_chance_rank1(TwoProtocols()) == {"all": pytest.approx((1 / 4 + 2 / 4) / 2), "indoor": 0.5}
