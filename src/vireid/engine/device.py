"""Where a run computes and how it stays reproducible: device choice, seeding, deterministic mode, AMP,
and the model moved, wrapped (DDP) and compiled for it."""

from __future__ import annotations

import contextlib
import os
import random
from typing import ContextManager

import numpy as np
import torch
from torch import nn

from vireid.config import ModelConfig
from vireid.engine import distributed
from vireid.errors import ConfigError


def select_device(spec: str | torch.device = "auto") -> torch.device:
    """Resolve ``auto|cpu|cuda|cuda:N`` to a device; under torchrun ``cuda`` means this rank's GPU.

    ``auto`` picks CUDA when available, else CPU. Asking for CUDA without a GPU is an error rather
    than a silent fallback, so a GPU run never turns into a days-long CPU run. Every caller computes
    next, so this is also where subnormal floats are flushed (`flush_denormals`).
    """
    flush_denormals()
    if isinstance(spec, torch.device):
        return spec
    spec = str(spec).strip().lower()
    if spec == "cpu":
        return torch.device("cpu")
    if spec not in ("auto", "cuda") and not spec.startswith("cuda:"):
        raise ConfigError(f"device {spec!r} is not one of auto|cpu|cuda|cuda:N (setting 'device')")
    if not torch.cuda.is_available():
        if spec == "auto":
            return torch.device("cpu")
        raise ConfigError(f"device {spec!r} was requested (setting 'device') but CUDA is not available; "
                          "use device=cpu or device=auto")
    if spec.startswith("cuda:"):
        return torch.device(spec)
    local_rank = os.environ.get("LOCAL_RANK")
    return torch.device(f"cuda:{int(local_rank)}" if local_rank is not None else "cuda")


def flush_denormals() -> bool:
    """Compute subnormal floats (|x| < 1.2e-38) on the CPU as zero; whether the CPU supports it.

    Weight decay drives weights that get no gradient towards zero, through the subnormal range,
    where x86 arithmetic is many times slower: after 25 CMC epochs on the CPU a training step took
    2.3x as long without flushing (docs/method-notes.md). Values this small change no result that is printed.
    """
    return torch.set_flush_denormal(True)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every GPU) from one number."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds all CUDA devices


def set_deterministic(enabled: bool = True) -> None:
    """Make kernels reproducible (slower): deterministic algorithms, no cuDNN autotuning.

    Needed for bit-identical resume on GPU; on CPU the default kernels are already deterministic.
    """
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled


def amp_enabled(device: torch.device | str, requested: bool = True) -> bool:
    """Mixed precision is used only on CUDA, where it pays; CPU runs stay in float32."""
    return bool(requested) and torch.device(device).type == "cuda"


def float16_autocast(device: torch.device | str, enabled: bool = True) -> bool:
    """Whether autocast runs in float16 (a CUDA GPU without bfloat16: V100, T4), which needs loss scaling."""
    return amp_enabled(device, enabled) and not torch.cuda.is_bf16_supported()


def grad_scaler(device: torch.device | str, enabled: bool = True) -> torch.amp.GradScaler:
    """A GradScaler that scales only under float16 autocast; elsewhere its calls are plain
    backward/step (bfloat16 keeps float32's range and needs no scaling)."""
    device = torch.device(device)
    return torch.amp.GradScaler(device.type, enabled=float16_autocast(device, enabled))


def autocast(device: torch.device | str, enabled: bool = True) -> ContextManager:
    """An autocast context for the device: bfloat16 on GPUs that support it, else float16; no-op on CPU."""
    device = torch.device(device)
    if not amp_enabled(device, enabled):
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


def wrap_model(model: nn.Module, model_cfg: ModelConfig, device: torch.device) -> nn.Module:
    """Move to the device; under torchrun, wrap in DDP (on GPUs with SyncBatchNorm when
    `model.sync_bn`; PyTorch's SyncBatchNorm has no CPU kernels, so gloo runs keep per-process BN); with
    `model.compile`, compile the result in place: parameter names and checkpoints stay as they are
    without it (no `_orig_mod.` wrapper), so optimiser groups and resume do not depend on the switch."""
    model = model.to(device)
    if model_cfg.channels_last and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    if distributed.is_distributed():
        if model_cfg.sync_bn and device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        ids = [device.index] if device.type == "cuda" else None
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if model_cfg.compile:
        model.compile()
    return model
