"""MMLM at SYSU-MM01 scale on synthetic features: time split (K-means, cost, assignment) and quality.

    python benchmarks/mmlm.py [--visible 22258] [--infrared 11909] [--clusters 400] [--dim 2048]

Features: each identity has 4 view modes; infrared samples carry a shared modality shift; the
infrared cluster ids are a random permutation of the visible ones, so a perfect matching exists.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from vireid.clustering.matching import assign_clusters, memory_match_cost, multi_memory_match
from vireid.clustering.memories import kmeans_submemories


def planted_features(num_samples: int, ids: int, dim: int, shift: torch.Tensor, seed: int,
                     identity_centres: torch.Tensor, modes: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
    """Normalised features (N, D) and their identity ids; identity sizes vary (log-normal)."""
    rng = np.random.default_rng(seed)
    share = rng.lognormal(0.0, 0.5, ids)
    pid = rng.choice(ids, size=num_samples, p=share / share.sum())
    mode = rng.integers(0, modes.shape[1], num_samples)
    gen = torch.Generator().manual_seed(seed)
    pid_t, mode_t = torch.as_tensor(pid), torch.as_tensor(mode)
    raw = identity_centres[pid_t] + modes[pid_t, mode_t] + shift + 0.15 * torch.randn(num_samples, dim, generator=gen)
    return F.normalize(raw, dim=1), pid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visible", type=int, default=22258)
    parser.add_argument("--infrared", type=int, default=11909)
    parser.add_argument("--clusters", type=int, default=400)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--memories", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(args.clusters, args.dim, generator=gen) / args.dim ** 0.5
    modes = 0.7 * torch.randn(args.clusters, 4, args.dim, generator=gen) / args.dim ** 0.5
    shift = 0.5 * torch.randn(args.dim, generator=gen) / args.dim ** 0.5
    feat_v, true_v = planted_features(args.visible, args.clusters, args.dim, torch.zeros(args.dim), 1, centres, modes)
    feat_r, true_r = planted_features(args.infrared, args.clusters, args.dim, shift, 2, centres, modes)
    perm = np.random.default_rng(3).permutation(args.clusters)
    labels_v = true_v.astype(np.int64)
    labels_r = perm[true_r].astype(np.int64)
    print(f"visible {args.visible}, infrared {args.infrared}, {args.clusters} clusters each, "
          f"D={args.dim}, n={args.memories}, torch threads {torch.get_num_threads()}")

    for repeat in range(args.repeats):
        t0 = time.perf_counter()
        mem_v = kmeans_submemories(feat_v, labels_v, args.memories)
        mem_r = kmeans_submemories(feat_r, labels_r, args.memories)
        t1 = time.perf_counter()
        cost = memory_match_cost(mem_v, mem_r)
        t2 = time.perf_counter()
        assign_clusters(cost)
        t3 = time.perf_counter()
        result = multi_memory_match(feat_v, labels_v, feat_r, labels_r, args.memories)
        t4 = time.perf_counter()
        print(f"run {repeat}: kmeans {t1 - t0:.3f}s  cost {t2 - t1:.3f}s  assignment {t3 - t2:.3f}s  "
              f"| multi_memory_match total {t4 - t3:.3f}s")
    print("quality:", result.evaluate(true_v, true_r))


if __name__ == "__main__":
    main()
