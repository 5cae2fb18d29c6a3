"""An independent transcription of the LLCM authors' released evaluation (github.com/ZYK100/LLCM, DEEN/).

Written from DEEN/data_manager.py, DEEN/eval_metrics.py and DEEN/test.py (HEAD 886e27c; AGW/ holds the
same code), one query at a time, with none of vireid's code:

- test images (data_manager.py:70-132): test ids ascending; cameras in the fixed order cam1..cam9
  for visible and cam1, cam2, cam4..cam9 for near-infrared (no nir cam3); files sorted. The
  "query" list is every image of its modality; the "gallery" list is, after `random.seed(trial)`,
  one `random.choice` per (id, camera) folder.
- directions (test.py:57-60, 181-234): IR to VIS (test_mode [1, 2]) ranks the visible gallery list
  for each near-infrared query; VIS to IR (test_mode [2, 1]) builds the near-infrared gallery list
  and the visible query list, and then ranks the *visible list* for each *drawn near-infrared
  image* (distmat = gallery · queryᵀ, eval_llcm(gallery labels, query labels, ...)).
- eval_llcm (eval_metrics.py:6-84): the ranked list without the gallery entries of the query's
  id *and* camera; CMC over the list with repeated ids removed; AP and INP on the list.
- 10 trials (test.py:199), metrics averaged over them.
"""

from __future__ import annotations

import os
import random

import numpy as np

VISIBLE_CAMERAS = [f"test_vis/cam{c}" for c in range(1, 10)]
INFRARED_CAMERAS = [f"test_nir/cam{c}" for c in (1, 2, 4, 5, 6, 7, 8, 9)]


def _test_ids(root: str) -> list[str]:
    with open(os.path.join(root, "idx", "test_id.txt")) as f:
        ids = [int(x) for x in f.read().splitlines()[0].split(",")]
    return sorted("%04d" % x for x in ids)


def _camera_and_pid(root: str, path: str) -> tuple[int, int]:
    parts = os.path.relpath(path, root).split(os.sep)  # test_xxx / camK / pid / file
    return int(parts[1][3:]), int(parts[2])


def every_image(root: str, cameras: list[str]) -> list[tuple[str, int, int]]:
    """(path, pid, camid) of every test image of these camera folders (process_query_llcm)."""
    out = []
    for pid in _test_ids(root):
        for cam in cameras:
            folder = os.path.join(root, cam, pid)
            if os.path.isdir(folder):
                for path in sorted(os.path.join(folder, f) for f in os.listdir(folder)):
                    out.append((path, *_camera_and_pid(root, path)[::-1]))
    return out


def drawn_images(root: str, cameras: list[str], trial: int) -> list[tuple[str, int, int]]:
    """(path, pid, camid) of one image per (id, camera) folder after random.seed(trial) (process_gallery_llcm)."""
    random.seed(trial)
    out = []
    for pid in _test_ids(root):
        for cam in cameras:
            folder = os.path.join(root, cam, pid)
            if os.path.isdir(folder):
                path = random.choice(sorted(os.path.join(folder, f) for f in os.listdir(folder)))
                out.append((path, *_camera_and_pid(root, path)[::-1]))
    return out


def eval_llcm(distmat: np.ndarray, q_pids, g_pids, q_camids, g_camids, max_rank: int = 20):
    """(CMC (max_rank,), mAP, mINP) of eval_llcm; a stable sort stands in for numpy's default one."""
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    q_camids, g_camids = np.asarray(q_camids), np.asarray(g_camids)
    cmc_sum, aps, inps = np.zeros(max_rank), [], []
    for i in range(distmat.shape[0]):
        order = np.argsort(distmat[i], kind="stable")
        kept = [j for j in order if not (g_pids[j] == q_pids[i] and g_camids[j] == q_camids[i])]
        hits = [pos for pos, j in enumerate(kept, start=1) if g_pids[j] == q_pids[i]]
        if not hits:
            continue
        distinct = list(dict.fromkeys(g_pids[j] for j in kept))
        first = distinct.index(q_pids[i]) + 1
        cmc_sum += np.arange(1, max_rank + 1) >= first
        aps.append(np.mean([n / pos for n, pos in enumerate(hits, start=1)]))
        inps.append(len(hits) / hits[-1])
    return cmc_sum / len(aps), float(np.mean(aps)), float(np.mean(inps))


def evaluate(root: str, feature_of, trials: int = 10) -> dict[str, dict[str, float]]:
    """Both settings of test.py with `feature_of(path)` (unit vectors): similarity q·g, rank by −q·g.

    Returns {"infrared-to-visible" | "visible-to-infrared": {rank1, rank5, rank10, rank20, mAP, mINP}},
    each the mean over trials 0..trials−1.
    """
    def rank(rows, columns):
        sim = np.array([[feature_of(r[0]) @ feature_of(c[0]) for c in columns] for r in rows])
        return eval_llcm(-sim, [r[1] for r in rows], [c[1] for c in columns], [r[2] for r in rows],
                         [c[2] for c in columns])

    out = {}
    for name in ("infrared-to-visible", "visible-to-infrared"):
        runs = []
        for trial in range(trials):
            if name == "infrared-to-visible":  # test_mode [1, 2]
                runs.append(rank(every_image(root, INFRARED_CAMERAS), drawn_images(root, VISIBLE_CAMERAS, trial)))
            else:  # test_mode [2, 1]: the drawn near-infrared images rank every visible image
                runs.append(rank(drawn_images(root, INFRARED_CAMERAS, trial), every_image(root, VISIBLE_CAMERAS)))
        cmc = np.mean([r[0] for r in runs], axis=0)
        out[name] = {**{f"rank{k}": float(cmc[k - 1]) for k in (1, 5, 10, 20)},
                     "mAP": float(np.mean([r[1] for r in runs])), "mINP": float(np.mean([r[2] for r in runs]))}
    return out
