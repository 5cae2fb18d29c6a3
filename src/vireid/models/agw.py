"""Two-stream AGW ResNet: modality-specific stems, shared trunk, non-local blocks, GeM, BN neck.

Parameter names of the trunk are torchvision's (`layer1.0.conv1.weight`, ...), so ImageNet weights
load by name; the stems are `visible_stem.conv1` / `infrared_stem.conv1` etc.
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models as tv_models

from vireid.models.nonlocal_block import NonLocalBlock
from vireid.models.pooling import GeM

ARCHS = {
    "resnet50": (tv_models.resnet50, "ResNet50_Weights", 2048),
    "resnet18": (tv_models.resnet18, "ResNet18_Weights", 512),
}
MODALITIES = ("visible", "infrared", "both")
NONLOCAL_CHANNELS = ("reference", "half")
STEM_KEYS = ("conv1", "bn1")
TRUNK_LAYERS = ("layer1", "layer2", "layer3", "layer4")


class ModelOutput(NamedTuple):
    """Training-mode output: pre-BN GeM vector (B, D), BN-neck output (B, D), logits (B, K) or None."""

    pooled: torch.Tensor
    bn: torch.Tensor
    logits: torch.Tensor | None


def nonlocal_positions(blocks_per_layer: tuple[int, ...]) -> dict[str, list[int]]:
    """0-based block indices of layer2/layer3 after which a non-local block runs.

    AGW puts them after the last 2 blocks of layer2 and the last 3 of layer3, which for ResNet-50
    (3, 4, 6, 3 blocks) is after blocks 2, 3 of layer2 and 3, 4, 5 of layer3. Layers with fewer
    blocks than that (ResNet-18: 2 per layer) get one block, after their last block.
    """
    positions = {}
    for name, count, wanted in (("layer2", blocks_per_layer[1], 2), ("layer3", blocks_per_layer[2], 3)):
        if count > wanted:
            positions[name] = list(range(count - wanted, count))
        else:
            positions[name] = [count - 1]
    return positions


class Stem(nn.Module):
    """conv1 → bn1 → relu → maxpool of a ResNet, one per modality."""

    def __init__(self, resnet: nn.Module) -> None:
        super().__init__()
        self.conv1 = copy.deepcopy(resnet.conv1)
        self.bn1 = copy.deepcopy(resnet.bn1)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = copy.deepcopy(resnet.maxpool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))


def _set_last_stride(layer4: nn.Sequential, stride: int) -> None:
    """Give layer4's first block stride `stride` (1 keeps the layer3 resolution: 288×144 → 18×9)."""
    block = layer4[0]
    for conv in (block.conv1, block.conv2):          # Bottleneck strides conv2, BasicBlock conv1
        if conv.stride != (1, 1):
            conv.stride = (stride, stride)
    if block.downsample is not None:
        block.downsample[0].stride = (stride, stride)


class TwoStreamAGW(nn.Module):
    """AGW re-id network with a visible stem and an infrared stem in front of one shared ResNet trunk.

    forward(x, modality, n_visible): x is (B, 3, H, W); modality "visible" | "infrared" | "both"
    ("both": the first `n_visible` rows are visible, the rest infrared). Train mode returns
    `ModelOutput`; eval mode returns L2-normalised BN-neck features (B, D) unless `return_all`.
    """

    def __init__(
        self,
        arch: str = "resnet50",
        nonlocal_blocks: bool = True,
        nonlocal_channels: str = "reference",
        last_stride: int = 1,
        gem_p: float = 3.0,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        factory, _, feature_dim = ARCHS[arch]
        resnet = factory(weights=None)
        _set_last_stride(resnet.layer4, last_stride)
        self.arch = arch
        self.feature_dim = feature_dim
        self.visible_stem = Stem(resnet)
        self.infrared_stem = Stem(resnet)
        self.layer1, self.layer2 = resnet.layer1, resnet.layer2
        self.layer3, self.layer4 = resnet.layer3, resnet.layer4
        # Non-local blocks live beside the layers (not inside them) so trunk keys stay torchvision's.
        self.nonlocal_after: dict[str, list[int]] = {}
        self.nonlocal2 = nn.ModuleList()
        self.nonlocal3 = nn.ModuleList()
        if nonlocal_blocks:
            self.nonlocal_after = nonlocal_positions(tuple(len(getattr(self, n)) for n in TRUNK_LAYERS))
            for name, holder in (("layer2", self.nonlocal2), ("layer3", self.nonlocal3)):
                channels = _out_channels(getattr(self, name))
                inter = 1 if nonlocal_channels == "reference" else channels // 2
                holder.extend(NonLocalBlock(channels, inter) for _ in self.nonlocal_after[name])
        self.pool = GeM(gem_p)
        self.bottleneck = nn.BatchNorm1d(feature_dim)
        nn.init.normal_(self.bottleneck.weight, 1.0, 0.01)
        nn.init.zeros_(self.bottleneck.bias)
        self.bottleneck.bias.requires_grad_(False)
        self.classifier: nn.Linear | None = None
        self.reset_classifier(num_classes)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the identity classifier by a fresh Linear(D, num_classes, no bias), N(0, 0.001); 0 removes it."""
        if num_classes <= 0:
            self.classifier = None
            return
        ref = self.bottleneck.weight
        classifier = nn.Linear(self.feature_dim, num_classes, bias=False).to(device=ref.device, dtype=ref.dtype)
        nn.init.normal_(classifier.weight, 0.0, 0.001)
        self.classifier = classifier

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters by role: "head" (BN neck and classifier, new in SCA and trained at the
        base learning rate) and "backbone" (stems, trunk, non-local blocks, pooling)."""
        groups: dict[str, list[nn.Parameter]] = {"backbone": [], "head": []}
        for name, param in self.named_parameters():
            if param.requires_grad:
                groups["head" if name.startswith(("bottleneck.", "classifier.")) else "backbone"].append(param)
        return groups

    @property
    def num_classes(self) -> int:
        return 0 if self.classifier is None else self.classifier.out_features

    def _stems(self, x: torch.Tensor, modality: str, n_visible: int | None) -> torch.Tensor:
        if modality == "visible":
            return self.visible_stem(x)
        if modality == "infrared":
            return self.infrared_stem(x)
        if modality == "both":
            if n_visible is None or not 0 <= n_visible <= x.shape[0]:
                raise ValueError(f"modality='both' needs 0 <= n_visible <= {x.shape[0]}, got {n_visible}")
            parts = []
            if n_visible > 0:
                parts.append(self.visible_stem(x[:n_visible]))
            if n_visible < x.shape[0]:
                parts.append(self.infrared_stem(x[n_visible:]))
            return parts[0] if len(parts) == 1 else torch.cat(parts)
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")

    def _layer(self, name: str, x: torch.Tensor) -> torch.Tensor:
        after = self.nonlocal_after.get(name, ())
        if not after:
            return getattr(self, name)(x)
        blocks = self.nonlocal2 if name == "layer2" else self.nonlocal3
        k = 0
        for i, block in enumerate(getattr(self, name)):
            x = block(x)
            if k < len(after) and i == after[k]:
                x = blocks[k](x)
                k += 1
        return x

    def feature_maps(self, x: torch.Tensor, modality: str = "visible", n_visible: int | None = None) -> torch.Tensor:
        """Trunk output before pooling, (B, D, H/16, W/16) with last stride 1."""
        x = self._stems(x, modality, n_visible)
        for name in TRUNK_LAYERS:
            x = self._layer(name, x)
        return x

    def forward(
        self, x: torch.Tensor, modality: str = "visible", n_visible: int | None = None, return_all: bool = False
    ) -> ModelOutput | torch.Tensor:
        """Train mode (or `return_all`): ModelOutput; eval mode: L2-normalised BN features (B, D).

        `return_all` in eval mode gives the per-sample losses of SCA's confidence pass (BN neck on
        running statistics) their pooled features and logits.
        """
        pooled = self.pool(self.feature_maps(x, modality, n_visible))       # (B, D)
        bn = self.bottleneck(pooled)                                        # (B, D)
        if not (self.training or return_all):
            return F.normalize(bn, dim=1)
        logits = self.classifier(bn) if self.classifier is not None else None
        return ModelOutput(pooled, bn, logits)


def _out_channels(layer: nn.Sequential) -> int:
    last = layer[-1]
    return (last.bn3 if hasattr(last, "bn3") else last.bn2).num_features
