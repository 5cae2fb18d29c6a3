"""Cost of one CMC training iteration against the bare backbone's forward+backward on as many images.

One CMC iteration (METHOD §6.1): a visible batch in two views and an infrared batch through the
two-stream AGW model in one `modality="both"` call, ClusterNCE against a visible and an infrared
memory, backward, Adam step, then the per-sample momentum updates of both memories. The baseline is
a plain torchvision ResNet of the same depth (one stem, no non-local blocks, average pooling, fc)
doing forward+backward on the same number of images, timed in the same run, interleaved:

- "bare"      : torchvision ResNet as shipped (last stride 2);
- "bare, s=1" : the same with last stride 1, i.e. the same feature-map sizes as the AGW model, so
                the ratio isolates what vireid adds (stems, non-local, GeM, BN neck, loss, optimiser).

The augmentation cost of one batch (uint8 cache rows → three views, main process) is printed too,
for sizing DataLoader workers. Inputs are random; nothing is downloaded.

    python benchmarks/train_step.py --arch resnet18 --height 128 --width 64 --threads 1
    python benchmarks/train_step.py --arch resnet50 --height 288 --width 144 --batch 8 --threads 1
    python benchmarks/train_step.py --arch resnet50 --height 288 --width 144 --device cuda --amp \
        --channels-last --batch 64 --iters 10
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models as tv_models

from vireid.config import ModelConfig
from vireid.models import create_model


def stand_in_memory(dim: int, clusters: int, device: torch.device):
    """ClusterMemory from vireid.losses when present, else a minimal ClusterNCE with the same update."""
    try:
        from vireid.losses import ClusterMemory

        return ClusterMemory.from_centroids(torch.randn(clusters, dim, device=device))
    except ImportError:
        class Memory(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.register_buffer("features", F.normalize(torch.randn(clusters, dim, device=device), dim=1))

            def forward(self, x, y):
                return F.cross_entropy(F.normalize(x, dim=1) @ self.features.T / 0.05, y)

            @torch.no_grad()
            def update(self, x, y):
                mixed = 0.1 * self.features[y] + 0.9 * F.normalize(x.detach(), dim=1)
                self.features[y] = F.normalize(mixed, dim=1)

        return Memory()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_it(fn: Callable[[], None], iters: int, device: torch.device, clock: Callable[[], float]) -> float:
    sync(device)
    t0 = clock()
    for _ in range(iters):
        fn()
    sync(device)
    return (clock() - t0) / iters


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="resnet18", choices=["resnet18", "resnet50"])
    ap.add_argument("--height", type=int, default=128)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16, help="visible (x2 views) and infrared batch size each")
    ap.add_argument("--clusters", type=int, default=400)
    ap.add_argument("--iters", type=int, default=1, help="iterations per timed round")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds, interleaved; the median is reported")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA)")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--fused-adam", action="store_true", help="torch.optim.Adam(fused=True)")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave torch's default)")
    ap.add_argument("--clock", choices=["cpu", "wall"], default=None,
                    help="process CPU time (default on CPU) or wall time (default on CUDA)")
    args = ap.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    # On a shared CPU, wall time mostly measures the neighbours; the CPU time this process uses
    # does not (with one torch thread it is the compute). On CUDA only wall time means anything.
    clock_name = args.clock or ("cpu" if device.type == "cpu" else "wall")
    clock = time.process_time if clock_name == "cpu" else time.perf_counter
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    torch.manual_seed(0)
    b, h, w = args.batch, args.height, args.width
    n = 3 * b
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp))

    model = create_model(ModelConfig(arch=args.arch, pretrained="none")).to(device, memory_format=fmt).train()
    params = [p for p in model.parameters() if p.requires_grad]
    # Same optimiser as the CMC stage; --fused-adam shows what torch's fused kernel saves on CPU.
    optimizer = torch.optim.Adam(params, lr=3.5e-4, weight_decay=5e-4, fused=True if args.fused_adam else None)
    mem_v = stand_in_memory(model.feature_dim, args.clusters, device)
    mem_r = stand_in_memory(model.feature_dim, args.clusters, device)
    x = torch.randn(n, 3, h, w, device=device).contiguous(memory_format=fmt)
    y_v = torch.randint(0, args.clusters, (b,), device=device).repeat(2)
    y_r = torch.randint(0, args.clusters, (b,), device=device)

    def cmc_step() -> None:
        with autocast():
            out = model(x, modality="both", n_visible=2 * b)
        feats = out.bn.float()
        loss = mem_v(feats[:2 * b], y_v) + mem_r(feats[2 * b:], y_r)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        mem_v.update(feats[:2 * b].detach(), y_v)
        mem_r.update(feats[2 * b:].detach(), y_r)

    def model_fwd_bwd() -> None:
        with autocast():
            out = model(x, modality="both", n_visible=2 * b)
        feats = out.bn.float()
        model.zero_grad(set_to_none=True)
        (mem_v(feats[:2 * b], y_v) + mem_r(feats[2 * b:], y_r)).backward()

    def bare_step(net: nn.Module) -> Callable[[], None]:
        def step() -> None:
            with autocast():
                out = net(x)
            net.zero_grad(set_to_none=True)
            out.float().square().mean().backward()
        return step

    factory = getattr(tv_models, args.arch)
    bare = factory(weights=None).to(device, memory_format=fmt).train()
    bare_s1 = factory(weights=None)
    block = bare_s1.layer4[0]
    for conv in (block.conv1, block.conv2):
        if conv.stride != (1, 1):
            conv.stride = (1, 1)
    block.downsample[0].stride = (1, 1)
    bare_s1 = bare_s1.to(device, memory_format=fmt).train()

    runs = {"vireid CMC iteration": cmc_step, "vireid fwd+bwd only": model_fwd_bwd,
            "bare": bare_step(bare), "bare, s=1": bare_step(bare_s1)}
    for fn in runs.values():                       # warm-up (allocator, cuDNN autotune, thread pools)
        fn()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.rounds):
        for name, fn in runs.items():
            times[name].append(time_it(fn, args.iters, device, clock))
    med = {k: statistics.median(v) for k, v in times.items()}

    from vireid.data.transforms import build_train_transforms
    from vireid.data.loaders import make_batch

    images = np.random.default_rng(0).integers(0, 256, size=(b, h, w, 3), dtype=np.uint8)
    tf = build_train_transforms(h, w)
    t0 = time.perf_counter()
    for view in (tf.visible, tf.visible_exchange, tf.infrared):
        make_batch(images, range(b), view)
    augment = time.perf_counter() - t0

    print(f"{args.arch} {h}x{w}, {b}+{b} visible views + {b} infrared = {n} images, device {device}, "
          f"amp {args.amp}, channels_last {args.channels_last}, fused Adam {args.fused_adam}, "
          f"torch threads {torch.get_num_threads()}, clock {clock_name}")
    for name, t in med.items():
        print(f"  {name:22s} {t * 1e3:9.1f} ms/iter  (rounds: {', '.join(f'{s * 1e3:.0f}' for s in times[name])})")
    cmc = med["vireid CMC iteration"]
    print(f"  ratio vs bare (stride 2)      {cmc / med['bare']:.3f}")
    print(f"  ratio vs bare, last stride 1  {cmc / med['bare, s=1']:.3f}")
    print(f"  model+loss fwd+bwd vs bare, last stride 1  {med['vireid fwd+bwd only'] / med['bare, s=1']:.3f}")
    print(f"  augmentation of the batch (3 views, main process): {augment * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
