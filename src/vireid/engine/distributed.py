"""DDP helpers: the same code runs single-process or under torchrun (NCCL on CUDA, gloo on CPU).

Each rank extracts features for a contiguous share of the samples; the shares are gathered back in
sample order. Rank 0 clusters and matches; labels are broadcast so every rank trains on the same ones.
Training batches are split into shares that may differ by one sample (`data.samplers.rank_share`):
the gathers accept unequal row counts, and `share_weight` rescales a rank's per-sample mean so that
DDP's gradient average is the mean over the global batch.
"""

from __future__ import annotations

import os
from typing import Callable, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from vireid.errors import VireidError

T = TypeVar("T")


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) without DDP."""
    if is_distributed():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return world()[0] == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1


def launch_rank() -> int:
    """This process's rank as torchrun set it (0 without torchrun): valid before the process group
    exists and after it is gone, so the command line can let rank 0 alone print results."""
    return int(os.environ["RANK"]) if launched_by_torchrun() else 0


def agree(step: Callable[[], T], undo: Callable[[T], object] | None = None) -> T:
    """Run `step` on every rank; when it raises a VireidError on any rank, every rank raises the
    lowest such rank's error (a rank whose own step succeeded first calls `undo` on its result),
    marked `told_by_rank0` on ranks other than 0 so that the command line prints it once. Without
    DDP: `step()`. Collectives inside `step` must be reached by every rank or by none.
    """
    try:
        result, error = step(), None
    except VireidError as err:
        result, error = None, err
    if not is_distributed():
        if error is not None:
            raise error
        return result
    errors: list = [None] * world()[1]
    dist.all_gather_object(errors, error)
    first = next((e for e in errors if e is not None), None)
    if first is None:
        return result
    if error is None and undo is not None:
        undo(result)
    if not is_main():
        first.told_by_rank0 = True
    raise first


def init_from_environment(device: torch.device) -> torch.device:
    """Join the process group torchrun describes; returns this rank's device."""
    if not launched_by_torchrun() or is_distributed():
        return device
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    dist.init_process_group(backend=backend)
    return device


def shutdown(clean: bool = True) -> None:
    """Leave the process group; after an error skip the barrier, which the other ranks may never reach."""
    if is_distributed():
        if clean:
            dist.barrier()
        dist.destroy_process_group()


def share(n: int) -> tuple[int, int]:
    """This rank's contiguous [start, stop) of n items."""
    rank, size = world()
    per = (n + size - 1) // size
    return min(rank * per, n), min((rank + 1) * per, n)


def _backend_device() -> torch.device:
    """Where the process group's collectives need their tensors (NCCL: this rank's GPU)."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def gather_rows(part: torch.Tensor, n: int) -> torch.Tensor:
    """Concatenate every rank's `share(n)` rows (in rank order) into the full (n, ...) tensor, on the
    CPU of every rank."""
    if not is_distributed():
        return part
    rank, size = world()
    per = (n + size - 1) // size
    padded = torch.zeros(per, *part.shape[1:], dtype=part.dtype, device=_backend_device())
    padded[: len(part)] = part.to(padded.device)
    chunks = [torch.empty_like(padded) for _ in range(size)]
    dist.all_gather(chunks, padded)
    return torch.cat(chunks)[:n].cpu()


def share_weight(rows: int, global_rows: int) -> float:
    """The factor that turns this rank's mean over its `rows` of a global batch of `global_rows` into
    its part of the global mean: rows·W/global_rows (1 when the shares are equal, and without DDP).
    DDP averages the ranks' gradients, so losses that are per-sample means over a rank's share
    (cross-entropy, ClusterNCE, the intra term) get the single-process gradient only when weighted."""
    size = world()[1]
    return 1.0 if size == 1 or global_rows == 0 else rows * size / global_rows


def _row_counts(rows: int) -> list[int]:
    """Every rank's row count, in rank order."""
    counts = [torch.zeros(1, dtype=torch.long, device=_backend_device()) for _ in range(world()[1])]
    dist.all_gather(counts, torch.tensor([rows], dtype=torch.long, device=_backend_device()))
    return [int(c) for c in counts]


def _gather_padded(t: torch.Tensor, counts: list[int]) -> torch.Tensor:
    """Every rank's rows of `t` (`counts[r]` on rank r), concatenated in rank order, on the backend's device."""
    padded = t.new_zeros(max(counts), *t.shape[1:], device=_backend_device())
    padded[: len(t)] = t.to(padded.device)
    chunks = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(chunks, padded)
    return torch.cat([chunk[:n] for chunk, n in zip(chunks, counts)])


class _GatherRows(torch.autograd.Function):
    """All ranks' rows in rank order; backward: the gradients of every rank's copy summed (all-reduce),
    this rank's rows kept. Written here because torch.distributed.nn's all_gather is deprecated."""

    @staticmethod
    def forward(ctx, t: torch.Tensor, counts: list[int]) -> torch.Tensor:  # noqa: ANN001 - autograd's ctx
        rank = world()[0]
        ctx.rows = slice(sum(counts[:rank]), sum(counts[: rank + 1]))
        return _gather_padded(t, counts).to(t.device)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: ANN001
        total = grad.contiguous().to(_backend_device())
        dist.all_reduce(total)
        return total[ctx.rows].to(grad.device), None


def gather_with_grad(t: torch.Tensor) -> torch.Tensor:
    """Every rank's rows (the counts may differ) in rank order, with gradients flowing back to this
    rank's own rows; identity without DDP. Losses over the whole global batch (triplet, MMD) use it:
    every rank computes the same loss, and the backward's sum over ranks cancels DDP's gradient
    averaging, so the parameters get the single-process gradient."""
    if not is_distributed():
        return t
    return _GatherRows.apply(t.contiguous(), _row_counts(len(t)))


def broadcast_arrays(arrays: list[np.ndarray] | None, count: int) -> list[np.ndarray]:
    """Send rank 0's list of arrays to every rank (others pass None)."""
    if not is_distributed():
        return arrays
    box = [arrays if is_main() else [None] * count]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_batch(t: torch.Tensor) -> torch.Tensor:
    """Every rank's batch rows (the counts may differ), concatenated in rank order; identity without DDP.

    Cluster-memory updates use it so that every rank applies the same updates in the same order and
    the memories stay identical across ranks.
    """
    if not is_distributed():
        return t
    return _gather_padded(t.contiguous(), _row_counts(len(t))).to(t.device)
