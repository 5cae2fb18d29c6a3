"""Speed of `evaluate_ranking` against a per-query loop, on SYSU-MM01-sized rankings.

The loop is written the way the protocol's released code is: one `argsort` of the whole distance
matrix, then per query: drop cam2 entries for cam3 queries, deduplicate pids for the CMC, AP, INP.
Both run on the same 10 trials (3,803 infrared queries x ~3,010 visible gallery images, the
multi-shot all-search size) and must agree; the script prints both times and their ratio.

    python benchmarks/evaluation.py [--trials 10] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from vireid.evaluation.metrics import evaluate_ranking


def loop_ranking(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=20):
    """Per-query SYSU-MM01 evaluation (the baseline): CMC on deduplicated pids, mAP, mINP."""
    indices = np.argsort(distmat, axis=1, kind="stable")
    pred = g_pids[indices]
    matches = pred == q_pids[:, None]
    cmc_sum, aps, inps = np.zeros(max_rank), [], []
    for i in range(len(q_pids)):
        keep = ~((q_camids[i] == 3) & (g_camids[indices[i]] == 2))
        hit = matches[i][keep]
        if not hit.any():
            continue
        labels = pred[i][keep]
        first = np.sort(np.unique(labels, return_index=True)[1])
        dedup = (labels[first] == q_pids[i]).cumsum()[:max_rank]
        cmc_sum += np.pad(dedup, (0, max_rank - len(dedup)), mode="edge")
        positions = np.flatnonzero(hit) + 1
        hits = np.arange(1, len(positions) + 1)
        aps.append(np.mean(hits / positions))
        inps.append(len(positions) / positions[-1])
    return cmc_sum / len(aps), float(np.mean(aps)), float(np.mean(inps))


def sysu_like_trial(rng, noise, num_pids=96, num_query=3803, per_camera=10, dim=256):
    """Query/gallery features with identity structure, 4 visible cameras x `per_camera` shots."""
    centres = rng.standard_normal((num_pids, dim)).astype(np.float32)
    q_pids = rng.integers(0, num_pids, num_query)
    q_cams = rng.choice([3, 6], num_query)
    g_pids = np.repeat(np.arange(num_pids), 4 * per_camera)
    g_cams = np.tile(np.repeat([1, 2, 4, 5], per_camera), num_pids)
    drop = rng.choice(len(g_pids), len(g_pids) - 3010, replace=False)  # some folders hold fewer
    g_pids, g_cams = np.delete(g_pids, drop), np.delete(g_cams, drop)
    q = centres[q_pids] + noise * rng.standard_normal((num_query, dim)).astype(np.float32)
    g = centres[g_pids] + noise * rng.standard_normal((len(g_pids), dim)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    return 1.0 - q @ g.T, q_pids, g_pids, q_cams, g_cams


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--noise", type=float, default=2.2,
                        help="feature noise: 2.2 gives about SYSU-MM01's published mAP; 5 is nearly random")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    trials = [sysu_like_trial(rng, args.noise) for _ in range(args.trials)]
    print(f"{args.trials} trials of {trials[0][0].shape[0]} queries x {trials[0][0].shape[1]} gallery, "
          f"torch threads {torch.get_num_threads()}, device {args.device}")

    fast_inputs = [(torch.from_numpy(d).to(args.device), qp, gp, qc, gc) for d, qp, gp, qc, gc in trials]
    evaluate_ranking(*fast_inputs[0], protocol="sysu")  # warm-up (allocator, kernels)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    start, start_cpu = time.perf_counter(), time.process_time()
    fast = [evaluate_ranking(*inputs, protocol="sysu") for inputs in fast_inputs]
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    fast_s, fast_cpu = time.perf_counter() - start, time.process_time() - start_cpu

    start, start_cpu = time.perf_counter(), time.process_time()
    slow = [loop_ranking(*trial) for trial in trials]
    loop_s, loop_cpu = time.perf_counter() - start, time.process_time() - start_cpu

    for f, (cmc, m_ap, m_inp) in zip(fast, slow):
        assert np.allclose(f.cmc, cmc) and np.isclose(f.mAP, m_ap) and np.isclose(f.mINP, m_inp)
    r1 = np.mean([f.cmc[0] for f in fast])
    m_ap = np.mean([f.mAP for f in fast])
    m_inp = np.mean([f.mINP for f in fast])
    print(f"results agree (mean rank-1 {100 * r1:.2f}%, mAP {100 * m_ap:.2f}%, mINP {100 * m_inp:.2f}%)")
    print(f"per-query loop  : {loop_s:.3f} s wall ({loop_s / args.trials:.3f} s per trial), {loop_cpu:.3f} s CPU")
    print(f"evaluate_ranking: {fast_s:.3f} s wall ({fast_s / args.trials:.3f} s per trial), {fast_cpu:.3f} s CPU")
    print(f"speed-up        : {loop_s / fast_s:.1f}x wall, {loop_cpu / fast_cpu:.1f}x CPU time")


if __name__ == "__main__":
    main()
