"""Every random stream of a run derives from its one seed through `derive_seed`.

A stream is named by where it is used (stage, epoch, stream name and, for augmentation, the DDP
rank), so streams never collide, a resumed epoch draws exactly what the uninterrupted one drew, and
adding a stream never shifts the others (unlike `seed * 1000 + epoch * 2 + 1` arithmetic).
Samplers are seeded without the rank, since every rank builds the same global batch and keeps its
share; augmentation is seeded with it, so ranks do not apply the same crops to different images.
"""

from __future__ import annotations

import zlib

import numpy as np


def derive_seed(seed: int, *keys: int | str) -> int:
    """A seed in [0, 2**31) for the stream `keys` (ints, or names) of run seed `seed`."""
    words = [int(seed) % 2**32] + [k % 2**32 if isinstance(k, int) else zlib.crc32(k.encode()) for k in keys]
    return int(np.random.SeedSequence(words).generate_state(1, dtype=np.uint32)[0] >> 1)
