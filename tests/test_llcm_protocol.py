"""vireid's LLCM evaluation (reader + protocol runner) against the LLCM authors' released test code.

`released_llcm.py` transcribes DEEN/test.py, data_manager.py and eval_metrics.py. The features are
exact in float32 (four entries of 0.5 each), so both sides compute the same distances, ties
included, and any difference is one of protocol: which images rank which, camera exclusion, CMC.
"""

import itertools
import zlib

import numpy as np
import pytest

import released_llcm as released

PIDS = [3, 11, 12, 20, 27, 28, 35, 41, 44, 50, 52, 58, 63, 64, 70, 71, 77, 80, 86, 90, 93, 97, 99, 104, 108]
VIS_CAMS, NIR_CAMS = (1, 2, 3), (1, 2, 4)
PAIRS = list(itertools.combinations(range(8), 2))


def _tree(root):
    """An LLCM tree: every test pid in one to three cameras of each modality (1-3 images each), an
    empty near-infrared cam3 as in the released data, and a minimal training index."""
    rng = np.random.default_rng(0)
    for folder, cams in (("test_vis", VIS_CAMS), ("test_nir", NIR_CAMS)):
        for pid in PIDS:
            chosen = rng.choice(cams, size=int(rng.integers(1, len(cams) + 1)), replace=False)
            for cam in chosen:
                person = root / folder / f"cam{cam}" / f"{pid:04d}"
                person.mkdir(parents=True)
                for k in range(int(rng.integers(1, 4))):
                    (person / f"{pid:04d}_c{cam:02d}_{k:04d}.jpg").write_bytes(b"")
    (root / "test_nir" / "cam3").mkdir()
    for name in ("train_vis/cam1/0001/a.jpg", "train_nir/cam4/0001/b.jpg"):
        (root / name).parent.mkdir(parents=True)
        (root / name).write_bytes(b"")
    (root / "idx").mkdir()
    (root / "idx" / "train_vis.txt").write_text("train_vis/cam1/0001/a.jpg 0\n")
    (root / "idx" / "train_nir.txt").write_text("train_nir/cam4/0001/b.jpg 0\n")
    (root / "idx" / "test_id.txt").write_text(",".join(str(p) for p in reversed(PIDS)))
    return root


def feature_of(path: str) -> np.ndarray:
    """Unit vector with 0.5 in four dimensions: two from the pid, one from the camera, one at random."""
    parts = path.replace("\\", "/").split("/")
    cam, pid = int(parts[-3][3:]), int(parts[-2])
    dims = [*PAIRS[pid % len(PAIRS)], 8 + cam % 4, 12 + zlib.crc32(path.encode()) % 4]
    v = np.zeros(16, dtype=np.float32)
    v[dims] = 0.5
    return v


@pytest.fixture
def llcm_tree(tmp_path):
    return _tree(tmp_path / "LLCM")


def test_both_directions_equal_the_released_test(llcm_tree):
    from vireid.data.llcm import LLCM
    from vireid.evaluation.protocols import run_protocols

    embed = lambda samples: np.stack([feature_of(s.path) for s in samples])  # noqa: E731
    got = run_protocols(embed, LLCM(llcm_tree), trials=3, progress=False)
    want = released.evaluate(str(llcm_tree), feature_of, trials=3)
    assert sorted(got) == sorted(want)
    for direction, metrics in want.items():
        for key, value in metrics.items():
            assert got[direction][key] == pytest.approx(value, abs=1e-9), f"{direction} {key}"


def test_same_camera_matches_are_left_out_of_an_llcm_ranking():
    """eval_metrics.py:32: gallery entries of the query's pid *and* camera are removed; other
    entries of that camera stay."""
    from vireid.evaluation.metrics import evaluate_ranking

    dist = np.array([[0.1, 0.2, 0.3, 0.4]])
    # pids 5 (same camera: removed), 8 (same camera: kept), 5 (camera 2), 9
    result = evaluate_ranking(dist, [5], [5, 8, 5, 9], q_camids=[1], g_camids=[1, 1, 2, 1], protocol="llcm")
    assert result.cmc[0] == 0.0 and result.cmc[1] == 1.0
    assert result.mAP == pytest.approx(0.5) and result.mINP == pytest.approx(0.5)
    with pytest.raises(ValueError, match="no valid query"):  # its only match is in its own camera
        evaluate_ranking(np.array([[0.1]]), [5], [5], q_camids=[1], g_camids=[1], protocol="llcm")
