"""Cost of one CMC and one SCA training iteration against the bare backbone's forward+backward.

Each iteration is the engine's own step, on a fixed batch already on the device (no input pipeline):

- "cmc"    : `CMCTrainer.contrast_step` (docs/method.md §6.1): a visible batch in two views and an
             infrared batch through the two-stream AGW model in one `modality="both"` call,
             ClusterNCE against a visible and an infrared memory, backward, fused Adam, then the
             per-sample momentum updates of both memories;
- "fwdbwd" : the same model and loss, forward + backward only (no optimiser, no memory update);
- "sca"    : `SCATrainer.step` (§6.3) after warm-up, every term on: weighted CE, triplet, intra and
             inter alignment against prototypes, Nesterov SGD;
- "bare"   : a plain torchvision ResNet of the same depth (one stem, no non-local blocks, average
             pooling, fc) doing forward+backward on the same images, last stride 2 as shipped;
- "bare1"  : the same with last stride 1, i.e. the AGW model's feature-map sizes, so the ratio
             isolates what vireid adds (stems, non-local, GeM, BN neck, loss, optimiser).

Runs are timed interleaved, in rounds; the median is reported. `--compile` compiles every model
(vireid's through the pipeline's own `wrap_model`, as `model.compile: true` does) and prints the
compile time (the first call) apart. The augmentation cost of one batch (uint8 cache rows → three
views, main process) is printed too, for sizing `data.workers`. Inputs are random; nothing is
downloaded.

    python benchmarks/train_step.py --arch resnet18 --height 128 --width 64 --threads 1
    python benchmarks/train_step.py --arch resnet50 --height 288 --width 144 --batch 8 --threads 1
    python benchmarks/train_step.py --arch resnet50 --height 288 --width 144 --device cuda --amp \\
        --channels-last --batch 32 --iters 10 [--compile --runs cmc,sca,bare1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import numpy as np
import torch
from torch import nn
from torchvision import models as tv_models

from vireid.config import CMCConfig, ModelConfig, SCAConfig
from vireid.engine.cmc import CMCTrainer, ContrastTarget
from vireid.engine.confidence import Confidence
from vireid.engine.context import RunContext
from vireid.engine.mmlm import SharedLabels
from vireid.engine.pipeline import wrap_model
from vireid.engine.sca import SCATrainer, sca_optimizer
from vireid.models import create_model

RUNS = ("cmc", "fwdbwd", "sca", "bare", "bare1")
LABELS = {"cmc": "vireid CMC iteration", "fwdbwd": "vireid fwd+bwd only", "sca": "vireid SCA iteration",
          "bare": "bare", "bare1": "bare, s=1"}
Step = Callable[[], None]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_it(fn: Step, iters: int, device: torch.device, clock: Callable[[], float]) -> float:
    """Seconds per call of `fn`, over `iters` calls, the device drained before and after."""
    sync(device)
    t0 = clock()
    for _ in range(iters):
        fn()
    sync(device)
    return (clock() - t0) / iters


def bare_resnet(arch: str, last_stride: int, device: torch.device, channels_last: bool, compile: bool) -> nn.Module:
    """A torchvision ResNet (random weights) with layer4's stride set to `last_stride`, in train mode."""
    net = getattr(tv_models, arch)(weights=None)
    block = net.layer4[0]
    for conv in (block.conv1, block.conv2):
        if conv.stride != (1, 1):
            conv.stride = (last_stride, last_stride)
    block.downsample[0].stride = (last_stride, last_stride)
    net = net.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format).train()
    if compile:
        net.compile()
    return net


def bare_step(net: nn.Module, x: torch.Tensor, ctx: RunContext) -> Step:
    """Forward + backward of `net` on `x` under the context's autocast (no optimiser)."""
    def step() -> None:
        with ctx.autocast():
            out = net(x)
        net.zero_grad(set_to_none=True)
        out.float().square().mean().backward()
    return step


def vireid_model(arch: str, num_classes: int, ctx: RunContext, compile: bool) -> nn.Module:
    model = create_model(ModelConfig(arch=arch, pretrained="none"), num_classes=num_classes)
    cfg = ModelConfig(arch=arch, pretrained="none", channels_last=ctx.channels_last, compile=compile)
    return wrap_model(model, cfg, ctx.device).train()


def cmc_steps(arch: str, views: list[torch.Tensor], clusters: int, ctx: RunContext, compile: bool
              ) -> tuple[Step, Step]:
    """The engine's CMC step and its forward+backward alone, on `views` = [visible, exchange, infrared]."""
    model = vireid_model(arch, 0, ctx, compile)
    trainer = CMCTrainer(model, None, CMCConfig(), None, ctx)
    b = len(views[0])
    labels = np.arange(b) % clusters
    centroids = torch.nn.functional.normalize(torch.randn(clusters, model.feature_dim), dim=1)
    target = ContrastTarget(labels, labels, trainer.memory(centroids), trainer.memory(centroids))
    optimizer = torch.optim.Adam(model.parameters(), lr=3.5e-4, weight_decay=5e-4, fused=True)
    step_indices = (np.arange(b), np.arange(b))
    x = torch.cat(views)
    y_v, y_r = torch.from_numpy(labels).to(ctx.device).repeat(2), torch.from_numpy(labels).to(ctx.device)

    def cmc() -> None:
        trainer.contrast_step(views, step_indices, target, optimizer)

    def fwdbwd() -> None:
        with ctx.autocast():
            out = model(x, modality="both", n_visible=2 * b)
        feats = out.bn.float()
        model.zero_grad(set_to_none=True)
        (target.memory_v(feats[:2 * b], y_v) + target.memory_r(feats[2 * b:], y_r)).backward()

    return cmc, fwdbwd


def sca_step(arch: str, views: list[torch.Tensor], clusters: int, ctx: RunContext, compile: bool) -> Step:
    """The engine's SCA step after warm-up (every loss term on) with 4 instances per identity."""
    sca = SCAConfig()
    model = vireid_model(arch, clusters, ctx, compile)
    b = len(views[0])
    labels = (np.arange(b) // sca.num_instances) % clusters
    trainer = SCATrainer(model, None, SharedLabels(labels, labels, clusters), sca, ctx)
    protos = [torch.randn(clusters, model.feature_dim, device=ctx.device) for _ in range(3)]
    conf = Confidence(torch.rand(b), torch.rand(b), torch.rand(b), *protos, summary={})
    optimizer, _ = sca_optimizer(model, sca)
    step_indices = (np.arange(b), np.arange(b))
    epoch = max(sca.intra_start, sca.inter_start)

    def step() -> None:
        trainer.step(views, step_indices, conf, epoch, optimizer)

    return step


def augment_seconds(b: int, h: int, w: int) -> float:
    """Wall seconds to build one step's three views of `b` images each in this process."""
    from vireid.data.loaders import make_batch
    from vireid.data.transforms import build_train_transforms, paper_pad

    images = np.random.default_rng(0).integers(0, 256, size=(b, h, w, 3), dtype=np.uint8)
    tf = build_train_transforms(h, w, pad=paper_pad(h))
    t0 = time.perf_counter()
    for view in (tf.visible, tf.visible_exchange, tf.infrared):
        make_batch(images, range(b), view)
    return time.perf_counter() - t0


def build_runs(args: argparse.Namespace, ctx: RunContext, views: list[torch.Tensor]) -> dict[str, Step]:
    wanted = [r.strip() for r in args.runs.split(",") if r.strip()]
    unknown = [r for r in wanted if r not in RUNS]
    if unknown:
        raise SystemExit(f"--runs: unknown {unknown}; expected a comma list of {', '.join(RUNS)}")
    x = torch.cat(views)
    runs: dict[str, Step] = {}
    if "cmc" in wanted or "fwdbwd" in wanted:
        cmc, fwdbwd = cmc_steps(args.arch, views, args.clusters, ctx, args.compile)
        runs.update({k: v for k, v in (("cmc", cmc), ("fwdbwd", fwdbwd)) if k in wanted})
    if "sca" in wanted:
        runs["sca"] = sca_step(args.arch, views, args.clusters, ctx, args.compile)
    for name, stride in (("bare", 2), ("bare1", 1)):
        if name in wanted:
            net = bare_resnet(args.arch, stride, ctx.device, ctx.channels_last, args.compile)
            runs[name] = bare_step(net, x, ctx)
    return {k: runs[k] for k in wanted}


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
    ap.add_argument("--compile", action="store_true", help="torch.compile every model (as model.compile: true)")
    ap.add_argument("--runs", default=",".join(RUNS), help=f"comma list of {', '.join(RUNS)}")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave torch's default)")
    ap.add_argument("--clock", choices=["cpu", "wall"], default=None,
                    help="process CPU time (default on CPU) or wall time (default on CUDA)")
    args = ap.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as a non-deterministic run has it
    # On a shared CPU, wall time mostly measures the neighbours; the CPU time this process uses
    # does not (with one torch thread it is the compute). On CUDA only wall time means anything.
    clock_name = args.clock or ("cpu" if device.type == "cpu" else "wall")
    clock = time.process_time if clock_name == "cpu" else time.perf_counter
    ctx = RunContext(device=device, run=None, amp=args.amp, channels_last=args.channels_last,
                     image_size=(args.height, args.width))
    torch.manual_seed(0)
    b, h, w = args.batch, args.height, args.width
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    views = [torch.randn(b, 3, h, w, device=device).contiguous(memory_format=fmt) for _ in range(3)]
    runs = build_runs(args, ctx, views)

    first = {}
    for name, fn in runs.items():   # warm-up: allocator, cuDNN autotune, thread pools; compiling
        first[name] = time_it(fn, 1, device, time.perf_counter)
        fn()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.rounds):
        for name, fn in runs.items():
            times[name].append(time_it(fn, args.iters, device, clock))
    med = {k: statistics.median(v) for k, v in times.items()}

    print(f"{args.arch} {h}x{w}, {b}+{b} visible views + {b} infrared = {3 * b} images, device {device}, "
          f"amp {args.amp}, channels_last {args.channels_last}, compile {args.compile}, "
          f"torch threads {torch.get_num_threads()}, clock {clock_name}")
    for name, t in med.items():
        print(f"  {LABELS[name]:22s} {t * 1e3:9.1f} ms/iter  (rounds: {', '.join(f'{s * 1e3:.0f}' for s in times[name])}; "
              f"first call {first[name]:.1f} s wall)")
    for run in ("cmc", "sca", "fwdbwd"):
        for base in ("bare", "bare1"):
            if run in med and base in med:
                print(f"  ratio {run} / {base:5s} {med[run] / med[base]:.3f}")
    print(f"  augmentation of the batch (3 views, main process): {augment_seconds(b, h, w) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
