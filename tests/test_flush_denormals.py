"""Subnormal floats are computed as zero once a command has picked its device: weight decay drives
weights into that range, where CPU arithmetic is many times slower."""

from __future__ import annotations

import torch

from vireid.engine.device import select_device


def test_selecting_a_device_flushes_subnormal_floats_to_zero():
    torch.set_flush_denormal(False)  # (an earlier test may have turned it on: values are flushed when made)
    try:
        subnormal = torch.tensor([1e-39])  # below float32's smallest normal number, 1.18e-38
        assert (subnormal * 1.0).item() != 0.0  # kept while flushing is off
        select_device("cpu")
        assert (subnormal * 1.0).item() == 0.0
        assert (torch.tensor([1e-30]) * 1.0).item() == torch.tensor([1e-30]).item()  # normal numbers stay
    finally:
        torch.set_flush_denormal(True)
