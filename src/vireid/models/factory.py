"""The only place that builds a `TwoStreamAGW` and the only loader of trained weights.

`create_model(model_cfg)` builds the network a `ModelConfig` describes and initialises it from its
start weights (torchvision ImageNet weights, a vireid weights file, or nothing); `load_model(path)`
rebuilds a trained model from a vireid checkpoint. Every problem with a weights file ends in one
`CheckpointError` line naming the file and what does not fit.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn
from torchvision import models as tv_models

from vireid.config import Config, ModelConfig, config_from_dict
from vireid.errors import CheckpointError, ConfigError, VireidError
from vireid.models.agw import ARCHS, NONLOCAL_CHANNELS, STEM_KEYS, TRUNK_LAYERS, TwoStreamAGW
from vireid.models.checkpoint import read_checkpoint


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare model inside DistributedDataParallel / DataParallel / torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def create_model(model_cfg: ModelConfig, num_classes: int = 0, pretrained: bool = True) -> TwoStreamAGW:
    """The two-stream AGW network of `model_cfg`, initialised from its start weights.

    `model_cfg.pretrained`: "imagenet" = torchvision ImageNet weights in both stems and the trunk (from
    `weights_path`, a torchvision ResNet state_dict, when set, else torch hub's download/cache);
    "none" = random init; anything else (e.g. "synthetic") = the vireid weights at `weights_path`.
    `pretrained=False` skips the start weights (the caller loads trained weights next).
    """
    m = model_cfg
    if m.arch not in ARCHS:
        raise ConfigError(f"model.arch={m.arch!r}: expected one of {', '.join(ARCHS)}")
    if m.nonlocal_channels not in NONLOCAL_CHANNELS:
        raise ConfigError(f"model.nonlocal_channels={m.nonlocal_channels!r}: expected reference or half")
    if m.last_stride not in (1, 2):
        raise ConfigError(f"model.last_stride={m.last_stride!r}: expected 1 or 2")
    model = TwoStreamAGW(m.arch, m.nonlocal_blocks, m.nonlocal_channels, m.last_stride, m.gem_p, num_classes)
    if not pretrained or m.pretrained == "none":
        return model
    path = Path(m.weights_path).expanduser() if m.weights_path else None
    if m.pretrained == "imagenet":
        state = read_state_dict(path) if path is not None else _download_imagenet(m.arch)
        load_torchvision_weights(model, state, str(path) if path is not None else "torchvision ImageNet weights")
        return model
    if path is None:
        raise ConfigError(
            f"model.pretrained={m.pretrained!r} loads vireid weights from model.weights_path, which is not set "
            "(use model.pretrained=imagenet|none, or give model.weights_path)"
        )
    load_start_weights(model, read_state_dict(path), str(path))
    return model


def load_model(checkpoint_path: str | Path, map_location: str | torch.device = "cpu") -> tuple[TwoStreamAGW, Config]:
    """(model in eval mode, the Config it was trained with) from a vireid checkpoint; downloads nothing."""
    ckpt = read_checkpoint(checkpoint_path, map_location=map_location)
    try:
        cfg = config_from_dict(ckpt.get("config") or {})
    except ConfigError as err:
        raise CheckpointError(f"checkpoint {checkpoint_path}: its stored config is not valid here ({err})") from None
    state = ckpt.get("model")
    if not isinstance(state, Mapping):
        raise CheckpointError(f"checkpoint {checkpoint_path} holds no model weights")
    num_classes = int(state["classifier.weight"].shape[0]) if "classifier.weight" in state else 0
    model = create_model(cfg.model, num_classes=num_classes, pretrained=False)
    load_trained_weights(model, state, str(checkpoint_path), stored_arch=cfg.model.arch)
    return model.eval(), cfg


def load_trained_weights(model: nn.Module, state: Mapping[str, torch.Tensor], source: str,
                         stored_arch: str | None = None) -> None:
    """Load a full trained state_dict into `model` (strict), with one clear error when it does not fit."""
    target = unwrap_model(model)
    arch = getattr(target, "arch", None)
    if stored_arch is not None and arch is not None and stored_arch != arch:
        raise CheckpointError(f"checkpoint {source} was written for {stored_arch}, this run is {arch}")
    own = target.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        parts = [f"{name} weight{'s' if len(keys) > 1 else ''} {', '.join(keys[:3])}"
                 + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
                 for name, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", wrong)) if keys]
        raise CheckpointError(f"checkpoint {source} does not fit this {arch or 'model'}: {'; '.join(parts)}")
    target.load_state_dict(state, strict=True)


def read_state_dict(path: Path, setting: str = "model.weights_path") -> dict[str, torch.Tensor]:
    """The state_dict in a weights file: a bare state_dict, or one under "model"/"state_dict" (vireid
    checkpoints, common training scripts); a DDP "module." prefix is dropped."""
    if not path.is_file():
        raise CheckpointError(f"{setting}: weights file {path} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{setting}: weights file {path} is empty (0 bytes); download or copy it again")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means "not our file"
        detail = str(exc).splitlines()[0].split(". ")[0] if str(exc) else "no detail"  # torch's first sentence
        raise CheckpointError(f"{setting}: {path} is not a weights file torch.save wrote, or it is truncated "
                              f"({type(exc).__name__}: {detail}); download or copy it again") from None
    for key in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{setting}: {path} does not hold a state_dict (a dict of tensors)")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_torchvision_weights(model: TwoStreamAGW, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Copy a torchvision ResNet state_dict into both stems and the trunk (fc is ignored)."""
    mapped = {}
    for key, value in state.items():
        top = key.split(".", 1)[0]
        if top in STEM_KEYS:
            mapped[f"visible_stem.{key}"] = value
            mapped[f"infrared_stem.{key}"] = value
        elif top in TRUNK_LAYERS:
            mapped[key] = value
    own = model.state_dict()
    needed = [k for k in own if k.startswith(("visible_stem.", "infrared_stem.") + TRUNK_LAYERS)]
    missing = [k for k in needed if k not in mapped]
    wrong = [k for k in needed if k in mapped and mapped[k].shape != own[k].shape]
    if missing or wrong:
        detail = ", ".join((missing + wrong)[:5])
        raise CheckpointError(
            f"model.weights_path: {source} is not a torchvision {model.arch} state_dict "
            f"({len(missing)} missing, {len(wrong)} mis-shaped keys, e.g. {detail})"
        )
    model.load_state_dict(mapped, strict=False)


def load_start_weights(model: TwoStreamAGW, state: Mapping[str, torch.Tensor], source: str) -> list[str]:
    """Load vireid start weights; the BN neck and classifier may differ (absent or another class count).

    Returns the keys left at their fresh initialisation.
    """
    own = model.state_dict()
    optional = ("classifier.", "bottleneck.")
    state = {k: v for k, v in state.items() if not (k.startswith("classifier.") and v.shape != own.get(k, v).shape)}
    missing = [k for k in own if k not in state and not k.startswith(optional)]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in state if k in own and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        parts = [f"{name} {len(keys)} (e.g. {', '.join(keys[:3])})"
                 for name, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", wrong)) if keys]
        raise CheckpointError(
            f"model.weights_path: {source} does not match TwoStreamAGW({model.arch}, "
            f"non-local={bool(model.nonlocal_after)}): {'; '.join(parts)} keys"
        )
    model.load_state_dict(state, strict=False)
    return [k for k in own if k not in state]


def _download_imagenet(arch: str) -> dict[str, Any]:
    weights = getattr(tv_models, ARCHS[arch][1]).IMAGENET1K_V1
    try:
        # torch.hub prints its "Downloading: ..." line to stdout, which holds only results in vireid
        with contextlib.redirect_stdout(sys.stderr):
            return weights.get_state_dict(progress=True)
    except Exception as exc:  # noqa: BLE001 - URLError, OSError, hash mismatch: all mean "no weights here"
        name = Path(weights.url).name
        raise VireidError(
            f"cannot get ImageNet weights for {arch} ({exc}); download {weights.url} elsewhere and set "
            f"model.weights_path=/path/to/{name} (a torchvision ResNet state_dict), or put it in the "
            f"torch hub cache ({torch.hub.get_dir()}/checkpoints/{name}), or use model.pretrained=none"
        ) from exc
