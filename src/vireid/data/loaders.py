"""Turn sampler batches into augmented image tensors, in the main process or in DataLoader workers.

The image cache holds uint8 (N, H, W, 3); a batch is the stack of a per-sample transform applied to
the rows a sampler picked. `BatchLoader` runs any picklable `build_batch(batch)` callable in
`num_workers` worker processes (each seeded by torch, so runs repeat under `torch.manual_seed`
for a fixed `num_workers`). Memory-mapped caches are shared with forked workers without copying.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

Transform = Callable[[np.ndarray], torch.Tensor]


def make_batch(images: np.ndarray, indices: Sequence[int] | np.ndarray, transform: Transform) -> torch.Tensor:
    """Apply `transform` to images[i] for i in indices and stack: (B, 3, H, W) float."""
    return torch.stack([transform(images[int(i)]) for i in indices])


class TrainingViews:
    """A training step's (visible_indices, infrared_indices) -> (visible, visible + ChannelExchange,
    infrared + ChannelAdapGray) image batches, the three views every MMM stage trains on.

    A step that is `None` (e.g. no mixed step in CMC phase 1) builds to `None`; a list of steps
    builds to a list, so one loader item can carry all the images of one iteration.
    """

    def __init__(self, visible_images: np.ndarray, infrared_images: np.ndarray, transforms: Any) -> None:
        self.visible_images, self.infrared_images, self.transforms = visible_images, infrared_images, transforms

    def __call__(self, step: Any) -> Any:
        if step is None:
            return None
        if isinstance(step, list):
            return [self(s) for s in step]
        idx_v, idx_r = step
        t = self.transforms
        return (make_batch(self.visible_images, idx_v, t.visible),
                make_batch(self.visible_images, idx_v, t.visible_exchange),
                make_batch(self.infrared_images, idx_r, t.infrared))


def _as_built(batch: Any) -> Any:
    """DataLoader's collate_fn: hand the built batch over as it is (its default turns tuples into lists)."""
    return batch


def _batch_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0] >> 1)


class _SeededBatches(Dataset):
    """Batch i of a list; with a seed, built under its own torch seed (same tensors for any num_workers)."""

    def __init__(self, batches: list[Any], build_batch: Callable[[Any], Any], seed: int | None) -> None:
        self.batches, self.build_batch, self.seed = batches, build_batch, seed

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> Any:
        if self.seed is None:
            return self.build_batch(self.batches[i])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_batch_seed(self.seed, i))
            return self.build_batch(self.batches[i])


class BatchLoader:
    """Iterate `build_batch(b)` for each batch b of `batch_sampler`, optionally in worker processes.

    The sampler runs in the main process; batch order is kept. With `seed`, batch i is built under
    torch seed f(seed, i) (the global RNG outside is left untouched), so the tensors
    are the same for any `num_workers` and a resumed run repeats its augmentations; without it,
    transforms draw from the global RNG (main process) or torch's per-worker seeds.
    """

    def __init__(
        self,
        batch_sampler: Iterable[Any],
        build_batch: Callable[[Any], Any],
        num_workers: int = 0,
        pin_memory: bool = False,
        prefetch_factor: int = 2,
        seed: int | None = None,
    ) -> None:
        self.batch_sampler = batch_sampler
        self.build_batch = build_batch
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.prefetch_factor = prefetch_factor
        self.seed = seed

    def __len__(self) -> int:
        return len(self.batch_sampler)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        batches = _SeededBatches(list(self.batch_sampler), self.build_batch, self.seed)
        if self.num_workers <= 0:
            for i in range(len(batches)):
                yield batches[i]
            return
        loader = DataLoader(
            batches,
            batch_size=None,
            shuffle=False,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            prefetch_factor=self.prefetch_factor,
            collate_fn=_as_built,
            # seeded batches: creating the workers draws from a private generator, so the global RNG (and
            # every later random draw of the run) is the same for any num_workers
            generator=None if self.seed is None else torch.Generator().manual_seed(self.seed),
        )
        yield from loader
