"""`vireid search` (ranked lists, gallery index cache) and `vireid export` through the command line."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vireid.cli import main
from vireid.config import config_to_dict, load_config
from vireid.data.synthetic import generate_synthetic
from vireid.engine.checkpoint import save_checkpoint
from vireid.data.transforms import normalize_images
from vireid.inference import Embedder
from vireid.models import load_model
from model_helpers import model_for_tests
from vireid.gallery_search import find_images


pytestmark = pytest.mark.usefixtures("private_cache")


def _save_tiny_checkpoint(path: Path, seed: int) -> Path:
    cfg = load_config("smoke")
    torch.manual_seed(seed)
    model = model_for_tests("resnet18", pretrained="none")
    with torch.no_grad():  # both stems start as copies; make the infrared one differ, as after training
        model.infrared_stem.conv1.weight.add_(0.05 * torch.randn_like(model.infrared_stem.conv1.weight))
    return save_checkpoint(path, model=model, stage="done", epoch=0, config=config_to_dict(cfg))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return _save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "final.pt", seed=0)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return generate_synthetic(tmp_path_factory.mktemp("synth"), ids=4, images_per_camera=2, height=64, width=32,
                              progress=False)


@pytest.fixture
def folders(dataset, tmp_path) -> tuple[Path, Path]:
    """query = infrared cam3/<pid>/*.jpg, gallery = visible cam1 + cam2 (<cam>/<pid>/*.jpg), own copies."""
    query, gallery = tmp_path / "query", tmp_path / "gallery"
    shutil.copytree(dataset / "cam3", query)
    for cam in ("cam1", "cam2"):
        shutil.copytree(dataset / cam, gallery / cam)
    return query, gallery


def _images(folder: Path) -> list[Path]:
    return sorted((p for p in folder.rglob("*.jpg")), key=lambda p: p.relative_to(folder).as_posix())


def _search(checkpoint, query, gallery, out, topk=3) -> dict:
    code = main(["search", "--checkpoint", str(checkpoint), "--query", str(query), "--query-modality", "infrared",
                 "--gallery", str(gallery), "--gallery-modality", "visible", "--topk", str(topk),
                 "--out", str(out), "--device", "cpu"])
    assert code == 0
    return json.loads(Path(out).with_suffix(".json").read_text())


def _count_embedded_rows(monkeypatch) -> dict[str, int]:
    counts = {"visible": 0, "infrared": 0}
    original = Embedder.embed

    def counting(self, images, modality, batch_size=64):
        feats = original(self, images, modality, batch_size)
        counts[modality] += feats.shape[0]
        return feats

    monkeypatch.setattr(Embedder, "embed", counting)
    return counts


def test_search_ranks_like_brute_force_cosine_and_judges_by_pid_folder(checkpoint, folders, tmp_path):
    query, gallery = folders
    out = tmp_path / "res" / "search.png"
    report = _search(checkpoint, query, gallery, out, topk=3)

    q_paths, g_paths = _images(query), _images(gallery)
    embedder = Embedder.from_checkpoint(checkpoint, device="cpu")
    q = embedder.embed([str(p) for p in q_paths], modality="infrared").double().numpy()
    g = embedder.embed([str(p) for p in g_paths], modality="visible").double().numpy()
    sims = q @ g.T
    with Image.open(out) as picture:
        assert picture.format == "PNG"
    assert report["gallery_size"] == len(g_paths) and report["identities"] is True
    assert [r["query"] for r in report["results"]] == [str(p) for p in q_paths]
    for i, result in enumerate(report["results"]):
        expected = [int(j) for j in np.argsort(-sims[i], kind="stable")[:3]]
        assert result["ranked"] == [str(g_paths[j]) for j in expected]
        assert np.allclose(result["scores"], sims[i, expected], atol=1e-5)
        assert result["scores"] == sorted(result["scores"], reverse=True)
        assert result["correct"] == [g_paths[j].parent.name == q_paths[i].parent.name for j in expected]


def test_index_is_reused_and_only_changed_files_or_a_new_checkpoint_re_embed(checkpoint, folders, tmp_path,
                                                                         monkeypatch):
    query, gallery = folders
    g_paths = _images(gallery)
    counts = _count_embedded_rows(monkeypatch)
    first = _search(checkpoint, query, gallery, tmp_path / "a.png")
    assert counts["visible"] == len(g_paths)

    counts["visible"] = 0
    second = _search(checkpoint, query, gallery, tmp_path / "b.png")
    assert counts["visible"] == 0
    assert second["results"] == first["results"]

    touched = g_paths[3]
    st = touched.stat()
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    third = _search(checkpoint, query, gallery, tmp_path / "c.png")
    assert counts["visible"] == 1
    for a, b in zip(third["results"], first["results"]):
        assert a["ranked"] == b["ranked"] and np.allclose(a["scores"], b["scores"], atol=1e-5)

    g_paths[0].unlink()
    counts["visible"] = 0
    fourth = _search(checkpoint, query, gallery, tmp_path / "d.png")
    assert counts["visible"] == 0 and fourth["gallery_size"] == len(g_paths) - 1
    assert all(str(g_paths[0]) not in r["ranked"] for r in fourth["results"])

    other = _save_tiny_checkpoint(tmp_path / "other" / "final.pt", seed=1)  # new weights: nothing reusable
    _search(other, query, gallery, tmp_path / "e.png")
    assert counts["visible"] == len(g_paths) - 1


def test_without_pid_folders_nothing_is_judged(checkpoint, dataset, tmp_path, capsys):
    gallery = tmp_path / "flat"
    gallery.mkdir()
    for i, path in enumerate(_images(dataset / "cam1")[:5]):
        shutil.copy(path, gallery / f"img{i}.jpg")
    one_query = _images(dataset / "cam6")[0]
    report = _search(checkpoint, one_query, gallery, tmp_path / "s.png", topk=10)
    assert report["identities"] is False and report["topk"] == 5
    assert len(report["results"]) == 1 and "correct" not in report["results"][0]
    assert sorted(report["results"][0]["ranked"]) == sorted(str(p) for p in gallery.iterdir())
    assert "ranked 5 gallery images for 1 query;" in capsys.readouterr().out  # one query, not "1 queries"


def test_find_images_is_recursive_sorted_case_insensitive_and_skips_hidden(tmp_path):
    for rel in ("b.JPG", "a/z.png", "a/notes.txt", ".hidden/x.jpg", "a/.y.jpg", "c.bmp", "a/b/c.jpeg"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    got = [p.relative_to(tmp_path).as_posix() for p in find_images(tmp_path)]
    assert got == ["a/b/c.jpeg", "a/z.png", "b.JPG", "c.bmp"]


@pytest.mark.parametrize("case", ["missing_query", "missing_gallery", "empty_gallery", "gallery_without_images",
                                  "query_folder_without_images", "gallery_is_a_file", "missing_checkpoint"])
def test_search_errors_are_one_line_naming_the_path(case, checkpoint, folders, tmp_path, capsys):
    query, gallery = folders
    ckpt = checkpoint
    if case == "missing_query":
        query = named = tmp_path / "nope.jpg"
    elif case == "missing_gallery":
        gallery = named = tmp_path / "no-gallery"
    elif case == "empty_gallery":
        gallery = named = tmp_path / "empty"
        gallery.mkdir()
    elif case == "gallery_without_images":
        gallery = named = tmp_path / "texts"
        (gallery / "sub").mkdir(parents=True)
        (gallery / "sub" / "readme.txt").write_text("no images here")
    elif case == "query_folder_without_images":
        query = named = tmp_path / "empty-query"
        query.mkdir()
    elif case == "gallery_is_a_file":
        gallery = named = _images(gallery)[0]
    else:
        ckpt = named = tmp_path / "missing.pt"
    code = main(["search", "--checkpoint", str(ckpt), "--query", str(query), "--gallery", str(gallery),
                 "--out", str(tmp_path / "s.png"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert str(named) in err
    assert not (tmp_path / "s.json").exists()


def test_export_onnx_infrared_matches_the_infrared_stream(checkpoint, tmp_path, capsys):
    import onnxruntime as ort

    out = tmp_path / "model.infrared.onnx"
    code = main(["export", "--checkpoint", str(checkpoint), "--format", "onnx", "--modality", "infrared",
                 "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and out.is_file()
    diff = float(re.search(r"max \|onnxruntime - torch\| = ([0-9.e+-]+)", printed).group(1))
    assert diff < 1e-4

    model, _ = load_model(checkpoint)
    images = torch.rand(2, 3, 64, 32, generator=torch.Generator().manual_seed(3))
    x = normalize_images(images)
    with torch.no_grad():
        infrared, visible = model(x, modality="infrared").numpy(), model(x, modality="visible").numpy()
    (got,) = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"images": x.numpy()})
    assert got.shape == infrared.shape
    assert np.abs(got - infrared).max() < 1e-4
    assert np.abs(got - visible).max() > 1e-3  # the infrared stem, not the visible one
