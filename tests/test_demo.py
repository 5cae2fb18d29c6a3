"""The demo's start weights come from other people's visible images only; the demo's pictures are right."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vireid.config import load_config
from vireid.data.records import INFRARED, VISIBLE, Sample
from vireid.data.synthetic_people import make_identity
from vireid.demo import command as demo, pretrain
from vireid.demo.pictures import ranked_list_picture
from vireid.engine.pipeline import RunResult

REPO = Path(__file__).resolve().parents[1]


def test_pretraining_source_is_other_people_and_visible_only(tmp_path: Path):
    recipe = pretrain.PretrainRecipe(ids=5, images_per_camera=1)
    root = pretrain.generate_source(tmp_path, recipe, height=32, width=16, progress=False)
    info = json.loads((root / "synthetic.json").read_text())
    assert info["seed"] == recipe.seed != demo.DEMO_DATA["seed"]
    # the generator draws a person from (seed, pid): same pid, other seed = another person
    for pid in range(1, 6):
        source, target = make_identity(recipe.seed, pid), make_identity(demo.DEMO_DATA["seed"], pid)
        assert not np.allclose(source.colors, target.colors)
        assert not np.allclose(source.emissivity, target.emissivity)
        assert not np.allclose(source.near_infrared, target.near_infrared)
    # the infrared cameras exist on disk, yet no infrared image is used
    assert any((root / "cam3").iterdir()) or any((root / "cam6").iterdir())
    samples = pretrain.source_visible_samples(root)
    assert samples and all(s.modality == VISIBLE and s.camid in (1, 2, 4, 5) for s in samples)
    assert all(Path(s.path).parts[-3] in ("cam1", "cam2", "cam4", "cam5") for s in samples)


def test_pretrained_weights_are_trained_on_source_visible_images_once(tmp_path: Path, monkeypatch):
    cfg = load_config("smoke", [f"data.cache_dir={tmp_path}"])
    recipe = pretrain.PretrainRecipe(ids=4, images_per_camera=1, epochs=1)
    seen = []

    def fake_training(cfg_, images, labels, recipe_, progress=True):
        seen.append((images.shape, labels.copy()))
        return {"marker": torch.zeros(1)}

    monkeypatch.setattr(pretrain, "pretrain_on_source", fake_training)
    path = pretrain.synthetic_pretrained_weights(cfg, tmp_path, recipe, progress=False)
    again = pretrain.synthetic_pretrained_weights(cfg, tmp_path, recipe, progress=False)
    assert path == again and path.is_file() and len(seen) == 1  # cached after the first call
    root = tmp_path / f"pretrain-source-{cfg.data.height}x{cfg.data.width}"
    visible_files = sorted(p for cam in ("cam1", "cam2", "cam4", "cam5") for p in (root / cam).rglob("*.jpg"))
    train_ids = {int(x) for part in ("train", "val") for x in (root / "exp" / f"{part}_id.txt").read_text().split(",")}
    expected = [p for p in visible_files if int(p.parent.name) in train_ids]
    shape, labels = seen[0]
    assert shape == (len(expected), cfg.data.height, cfg.data.width, 3)
    assert sorted(np.unique(labels)) == list(range(len(train_ids)))


def test_grey_remap_is_a_piecewise_linear_curve_of_the_luminance():
    gen = torch.Generator().manual_seed(3)
    remap = pretrain.RandomGreyRemap(knots=5, generator=gen)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    rgb = torch.rand(3, 6, 4, generator=torch.Generator().manual_seed(0))
    out = remap((rgb - mean) / std) * std + mean  # back to pixel values
    levels = torch.rand(5, generator=torch.Generator().manual_seed(3)).numpy()
    grey = (0.2989 * rgb[0] + 0.5870 * rgb[1] + 0.1140 * rgb[2]).numpy()
    expected = np.interp(grey, np.linspace(0, 1, 5), levels)
    for c in range(3):  # a grey image: every channel the same curve
        np.testing.assert_allclose(out[c].numpy(), expected, atol=1e-5)


def test_thermal_palette_is_a_trilinear_lookup_of_the_colour():
    from scipy.interpolate import RegularGridInterpolator

    palette = pretrain.RandomThermalPalette(grid=3, noise=0.0, blur=False, generator=torch.Generator().manual_seed(5))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    rgb = torch.rand(3, 6, 4, generator=torch.Generator().manual_seed(1))
    rgb[:, 0, 0], rgb[:, 0, 1] = torch.tensor([0.8, 0.1, 0.1]), torch.tensor([0.1, 0.45, 0.1])  # similar luminance
    out = palette((rgb - mean) / std) * std + mean
    table = torch.rand((1, 1, 3, 3, 3), generator=torch.Generator().manual_seed(5))[0, 0].numpy()  # axes b, g, r
    axis = np.linspace(0, 1, 3)
    points = rgb.permute(1, 2, 0).reshape(-1, 3).numpy()[:, ::-1]  # (b, g, r) per pixel
    expected = RegularGridInterpolator((axis, axis, axis), table)(points).reshape(6, 4)
    for c in range(3):  # a grey image
        np.testing.assert_allclose(out[c].numpy(), expected, atol=1e-5)
    assert abs(expected[0, 0] - expected[0, 1]) > 0.01, "colours of equal brightness get their own levels"


class _FakeSYSU:
    """Two test people; person 1 is seen by cam3 (infrared) and in cam2 + cam4 (visible)."""

    def __init__(self, tmp: Path) -> None:
        from PIL import Image

        def sample(pid, cam, i):
            path = tmp / f"c{cam}_{pid}_{i}.png"
            Image.fromarray(np.full((8, 4, 3), 40 * pid + cam, np.uint8)).save(path)
            return Sample(str(path), pid, cam, INFRARED if cam in (3, 6) else VISIBLE)

        self._query = [sample(1, 3, 0), sample(2, 6, 0)]
        self._gallery = [sample(1, 2, 0), sample(1, 4, 0), sample(2, 1, 0), sample(2, 5, 0)]

    def query(self, mode):
        return self._query

    def gallery(self, mode, trial, shots):
        return self._gallery


def test_ranked_list_picture_skips_cam2_for_cam3_queries_and_marks_true_matches(tmp_path: Path, monkeypatch):
    data = _FakeSYSU(tmp_path)
    samples = data._query + data._gallery
    # person 1's cam3 query is closest to its own cam2 image, which the protocol excludes
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0],          # queries: person 1 (cam3), person 2 (cam6)
                             [1.0, 0.0], [0.0, 1.0],          # gallery person 1: cam2, cam4
                             [0.9, 0.1], [0.6, 0.8]])         # gallery person 2: cam1, cam5
    features = torch.nn.functional.normalize(features, dim=1)
    drawn = {}

    def fake_plot(query_paths, gallery_paths, ranked, correct, path):
        drawn.update(query=list(query_paths), gallery=list(gallery_paths), ranked=ranked, correct=correct)
        return Path(path)

    monkeypatch.setattr("vireid.demo.pictures.plot_ranked_lists", fake_plot)
    ranked_list_picture(data, samples, features, tmp_path / "ranked.png", queries=2, topk=3)
    gallery = drawn["gallery"]
    for q, path in enumerate(drawn["query"]):
        query = next(s for s in data._query if s.path == path)
        ranked = [data._gallery[i] for i in drawn["ranked"][q]]
        dist = {s.path: 1 - float(features[samples.index(query)] @ features[samples.index(s)]) for s in data._gallery}
        allowed = [s for s in data._gallery if not (query.camid == 3 and s.camid == 2)]
        expected = sorted(allowed, key=lambda s: dist[s.path])[:3]
        assert [s.path for s in ranked] == [s.path for s in expected]
        assert list(drawn["correct"][q]) == [s.pid == query.pid for s in ranked]
    assert gallery == [s.path for s in data._gallery]


def test_stage_summary_combines_start_stage_evaluations_quality_and_matching():
    def evaluation(rank1):
        return {"eval": {"all-single": {"rank1": rank1, "mAP": rank1 / 2}, "indoor-single": {"rank1": 0.9, "mAP": 0.9}}}

    result = RunResult(final={}, summaries={"cmc": evaluation(0.20), "mmlm": {"pairs": 5, "pair_precision": 0.4},
                                            "sca": evaluation(0.40)})
    start = {"all-single": {"rank1": 0.05, "mAP": 0.025}}
    quality = {"start": {"ari_visible": 0.8}, "cmc": {"ari_mixed": 0.5}, "sca": {"ari_infrared": 0.6}}
    summary = demo.stage_summary(start, result, quality)
    assert summary["start"] == {"rank1": 0.05, "mAP": 0.025, "ari_visible": 0.8}
    assert summary["cmc"] == {"rank1": 0.20, "mAP": 0.10, "ari_mixed": 0.5}
    assert summary["sca"] == {"rank1": 0.40, "mAP": 0.20, "ari_infrared": 0.6}
    assert summary["mmlm"] == {"pairs": 5, "pair_precision": 0.4}
    # a run of the CMC stage alone: no SCA row even if a quality was measured for the final model
    cmc_only = RunResult(final={}, summaries={"cmc": evaluation(0.20)})
    assert set(demo.stage_summary(start, cmc_only, quality)) == {"start", "cmc"}


def test_verdict_line_says_whether_mmm_beat_cmc_and_points_to_the_budget_curve():
    mmlm = {"pair_precision": 0.2}
    below = demo.verdict_line({"cmc": {"rank1": 0.25}, "sca": {"rank1": 0.206}, "mmlm": mmlm})
    assert below.startswith("full MMM ended 4.4 Rank-1 points below CMC only (20% of MMLM's cross-modal pairs ")
    above = demo.verdict_line({"cmc": {"rank1": 0.25}, "sca": {"rank1": 0.27}})
    assert above.startswith("full MMM ended 2.0 Rank-1 points above CMC only; ")
    for line in (below, above):
        assert line.endswith(f": {demo.BUDGET_CURVE_PAGE}.")
    assert (REPO / demo.BUDGET_CURVE_PAGE).is_file()  # the page it points to exists
    assert demo.verdict_line({"cmc": {"rank1": 0.25}}) is None  # a CMC-only run has nothing to compare


def test_mmlm_line_puts_the_pair_precision_next_to_its_chance_level():
    line = demo.mmlm_line({"pairs": 52, "clusters_visible": 52, "clusters_infrared": 27, "pair_precision": 0.115,
                           "pair_precision_chance": 0.04, "ari_transferred": 0.54})
    assert line == ("mmlm: 52 pairs of 52 visible and 27 infrared clusters; pair precision 0.115 (chance 0.040), "
                    "transferred-label ARI 0.540")
