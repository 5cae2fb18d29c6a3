"""Where a run's start weights come from, resolved before the model is built.

`model.pretrained` names the source: `imagenet` (torchvision; `model.weights_path` may point at a
downloaded file), `none` (random init), or a registered provider such as the demo's `synthetic`,
which builds weights on demand and returns their file. A provider is registered by the package that
owns it (`vireid.demo` registers `synthetic` when imported), so the engine never imports the demo.
Under DDP rank 0 provides the file while the others wait, then every rank reads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from vireid.config import Config
from vireid.engine.distributed import is_distributed, is_main
from vireid.errors import ConfigError

Provider = Callable[[Config], Path]
PROVIDERS: dict[str, Provider] = {}


def register_start_weights(name: str, provider: Provider) -> None:
    """Let `model.pretrained=<name>` (without `model.weights_path`) build its weights with `provider(cfg)`."""
    PROVIDERS[name] = provider


def resolve_start_weights(cfg: Config) -> None:
    """Set `cfg.model.weights_path` when a provider must build the weights named by `model.pretrained`."""
    name = cfg.model.pretrained
    if name in ("imagenet", "none") or cfg.model.weights_path:
        return
    provider = PROVIDERS.get(name)
    if provider is None:
        raise ConfigError(f"model.pretrained={name!r} needs model.weights_path (a vireid weights file); "
                          f"no provider builds {name!r} weights here"
                          + (" (the demo's synthetic weights: `import vireid.demo` or run `vireid demo`)"
                             if name == "synthetic" else ""))
    if is_main():
        cfg.model.weights_path = str(provider(cfg))
    if is_distributed():
        torch.distributed.barrier()
        cfg.model.weights_path = str(provider(cfg))  # cached by rank 0: a lookup
