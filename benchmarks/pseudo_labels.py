"""Speed and memory of the pseudo-label engine (kNN -> sparse Jaccard -> DBSCAN) at scale.

On random-but-clustered L2-normalised features (N samples around N/40 centres), in one run:
- the bare exact kNN search with k1 (the yardstick: the only O(N^2 D) step);
- `jaccard_distance` end to end (kNN included), unless --skip-direct;
- the same split in two: its kNN search (k1 or 2 k1 neighbours) and `jaccard_from_knn` (kNN excluded),
  with its peak memory (numpy/scipy arrays by tracemalloc; with features on a GPU also the CUDA
  allocator's peak);
- DBSCAN on the result, and the ratio (Jaccard + DBSCAN) / bare kNN, Jaccard including its kNN;
- with --check, whether the chosen backend's matrix equals the scipy backend's on the same kNN;
- the stored entries against a dense N x N float32 matrix; the process's peak RSS; the load
  average before and after (other jobs on the machine slow every timing).

--device puts the features (and so the kNN) on the CPU or a GPU; --backend picks the Jaccard pass
(auto: torch for CUDA features, scipy on the CPU). Targets: (Jaccard + DBSCAN) / bare kNN <= 1.5 on
the CPU, <= 1.3 on a GPU. On a shared machine use --repeat 3: each time is then the best of three,
which other jobs can only lengthen (on a GPU the first of them also pays for CUDA's warm-up).

    python benchmarks/pseudo_labels.py --n 20000 --repeat 3            # D = 2048
    python benchmarks/pseudo_labels.py --n 20000 --device cuda --repeat 3 --check
    python benchmarks/pseudo_labels.py --n 5000 --backend torch        # torch pass on CPU tensors
    python benchmarks/pseudo_labels.py --n 200000 --dim 256 --block-size 1024 --skip-direct
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import tracemalloc

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score

from vireid.clustering.dbscan import dbscan_labels
from vireid.clustering.jaccard import _search_width, jaccard_distance, jaccard_from_knn
from vireid.clustering.knn import knn_search


def clustered_features(n: int, dim: int, clusters: int, noise: float, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """(N, D) L2-normalised features: unit-normal centres plus `noise` x unit-normal noise."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, dim, generator=gen)
    labels = torch.randint(0, clusters, (n,), generator=gen)
    feats = torch.randn(n, dim, generator=gen).mul_(noise).add_(centres[labels])
    return torch.nn.functional.normalize(feats, dim=1), labels.numpy()


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, *args, **kwargs):
    synchronize()
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    synchronize()
    return out, time.perf_counter() - start


def best_of(repeat: int, fn, *args, **kwargs):
    """The last result and the shortest of `repeat` timings (other jobs only ever add time)."""
    times = []
    for _ in range(repeat):
        out, seconds = timed(fn, *args, **kwargs)
        times.append(seconds)
    return out, min(times)


def same_as_scipy(jac, feats, dist, index, k1: int, k2: int) -> str:
    """One line: does `jac` have the scipy backend's sparsity pattern, and how far apart are the values."""
    reference = jaccard_from_knn(feats, dist, index, k1=k1, k2=k2, backend="scipy")
    same = np.array_equal(jac.indptr, reference.indptr) and np.array_equal(jac.indices, reference.indices)
    gap = float(np.abs(jac.data - reference.data).max()) if same and jac.nnz else float("nan")
    return f"check against the scipy backend: same sparsity pattern {same}, largest value difference {gap:.2e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--clusters", type=int, default=None, help="default: n // 40")
    parser.add_argument("--noise", type=float, default=1.0, help="noise scale per coordinate (centres: 1)")
    parser.add_argument("--k1", type=int, default=30)
    parser.add_argument("--k2", type=int, default=6)
    parser.add_argument("--eps", type=float, default=0.6)
    parser.add_argument("--min-samples", type=int, default=4)
    parser.add_argument("--block-size", type=int, default=4096)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where the features (and kNN) live")
    parser.add_argument("--backend", choices=["auto", "scipy", "torch"], default="auto",
                        help="the Jaccard pass: auto = torch for CUDA features, scipy on the CPU")
    parser.add_argument("--check", action="store_true", help="compare the result with the scipy backend's")
    parser.add_argument("--skip-direct", action="store_true", help="skip the end-to-end jaccard_distance run")
    parser.add_argument("--repeat", type=int, default=1, help="report the best of this many timings")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    clusters = args.clusters or max(1, args.n // 40)
    feats, truth = clustered_features(args.n, args.dim, clusters, args.noise, args.seed)
    feats = feats.to(args.device)
    n, k1 = args.n, args.k1
    print(f"N={n} D={args.dim} clusters={clusters} noise={args.noise} k1={k1} k2={args.k2} "
          f"block={args.block_size} device={args.device} backend={args.backend} threads={torch.get_num_threads()} "
          f"timings: best of {args.repeat}")
    load_before = os.getloadavg()

    _, t_knn = best_of(args.repeat, knn_search, feats, k1, block_size=args.block_size)
    print(f"{f'bare exact kNN (k={k1})':<34}{t_knn:9.2f} s")

    t_direct = None
    if not args.skip_direct:
        _, t_direct = best_of(
            args.repeat, jaccard_distance, feats, k1, args.k2, block_size=args.block_size, backend=args.backend
        )
        print(f"{'jaccard_distance, kNN included':<34}{t_direct:9.2f} s")

    width = _search_width(n, args.dim, k1)  # what jaccard_distance searches
    (dist, index), t_search = best_of(args.repeat, knn_search, feats, width, block_size=args.block_size)
    on_gpu = feats.is_cuda
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
        held = torch.cuda.memory_allocated()
    tracemalloc.start()
    jac, t_rest = best_of(args.repeat, jaccard_from_knn, feats, dist, index, k1=k1, k2=args.k2, backend=args.backend)
    peaks = f"numpy/scipy peak {tracemalloc.get_traced_memory()[1] / 2**30:.2f} GiB"
    tracemalloc.stop()
    if on_gpu:
        peaks += f", CUDA allocator peak {(torch.cuda.max_memory_allocated() - held) / 2**30:.2f} GiB"
    elif args.backend == "torch":
        peaks += ", torch's CPU tensors not traced"
    print(f"{f'  its kNN search (k={width})':<34}{t_search:9.2f} s")
    print(f"{'  Jaccard, kNN excluded':<34}{t_rest:9.2f} s  ({peaks})")
    jaccard_time = t_direct if t_direct is not None else t_search + t_rest
    label = "end to end" if t_direct is not None else "search + rest"
    print(f"ratio Jaccard (kNN included, {label}) / bare kNN: {jaccard_time / t_knn:.2f}")
    if t_direct is not None:
        print(f"ratio (search + rest) / bare kNN: {(t_search + t_rest) / t_knn:.2f}")

    labels, t_dbscan = timed(dbscan_labels, jac, args.eps, args.min_samples)
    found = int(labels.max()) + 1
    print(f"{f'DBSCAN (eps={args.eps})':<34}{t_dbscan:9.2f} s  -> {found} clusters, "
          f"{int((labels < 0).sum())} outliers, ARI {adjusted_rand_score(truth, labels):.3f}")
    target = 1.3 if on_gpu else 1.5
    print(f"ratio (Jaccard + DBSCAN) / bare kNN: {(jaccard_time + t_dbscan) / t_knn:.2f} "
          f"(Jaccard {label}; target <= {target} on the {'GPU' if on_gpu else 'CPU'})")
    if args.check:
        print(same_as_scipy(jac, feats, dist, index, k1, args.k2))

    stored = jac.data.nbytes + jac.indices.nbytes + jac.indptr.nbytes
    dense = 4.0 * n * n
    print(f"stored entries: {jac.nnz} ({jac.nnz / n:.1f} per row), {stored / 2**20:.1f} MiB; "
          f"dense float32 N x N: {dense / 2**30:.1f} GiB ({dense / stored:.0f}x larger)")
    print(f"peak RSS of the process: {peak_rss_gib():.2f} GiB (features {feats.numel() * 4 / 2**30:.2f} GiB)")
    print(f"load average (1 min) before/after: {load_before[0]:.1f} / {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
