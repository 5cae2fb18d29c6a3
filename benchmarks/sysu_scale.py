"""How long the whole `sysu` preset takes: one timed epoch of every stage on a SYSU-MM01-sized
synthetic set, projected to the preset's schedule.

SYSU-MM01 trains on 395 identities with 22,258 visible and 11,909 infrared images and tests on 96
identities. The synthetic generator (`vireid.data.synthetic`, drawn in parallel, cached under
`--data`) draws the same number of images for every (person, camera) and lets some people miss
some cameras, so the script picks the images per camera and the seed whose training set comes
closest to those counts, and prints the counts it used. Images are at the preset's 288×144.

It then times, on the chosen device, with the engine's own functions and a RunContext whose run
folder is a temporary directory:

- the training step alone on a fixed batch (`CMCTrainer.contrast_step`, the preset's batch) against
  a bare torchvision ResNet of the same depth doing forward + backward on the same images (the
  floor; `benchmarks/train_step.py` breaks the step down further);
- the input pipeline: one step's three views augmented in this process, and `training_loader`
  with `data.workers` processes, in images/s against the device's training images/s;
- one epoch of CMC phase 1 and one of phase 2 (`CMCTrainer.epoch`: feature extraction, clustering,
  memories, training), MMLM (`mmlm_stage`), one SCA epoch after warm-up (`SCATrainer.epoch`:
  confidence pass, then training with every loss term), the full evaluation (`Evaluator`: all and
  indoor search, single and multi shot, `eval.trials` trials), and one checkpoint.

The projection is per-epoch time × epochs of each stage + evaluations × their time + checkpoints
× theirs, with the evaluation count following `eval.every` as the pipeline does. With
`--cmc-iterations`/`--sca-iterations` only that many training steps of an epoch are timed and the
epoch's training time is scaled to the full count (the rest of the epoch is timed whole).

Weights are random (`model.pretrained=none`, nothing is downloaded), which costs the same as trained
ones; clustering a random model's features gives other clusters than a trained model's, so SCA is
timed on the true identities as shared labels (all samples labelled, as late in a real run), and
its learning rate is lowered so random starts cannot diverge (compute does not depend on it).

    python benchmarks/sysu_scale.py --device cuda                     # the full epochs: minutes
    python benchmarks/sysu_scale.py --device cuda --cmc-iterations 40 --sca-iterations 120 --json out.json
    python benchmarks/sysu_scale.py --device cuda --set model.compile=true --set data.workers=12
    python benchmarks/sysu_scale.py --tiny --device cpu               # the same code in seconds
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from train_step import bare_resnet, bare_step, sync, time_it
from vireid.config import Config, config_to_dict, load_config, resolve_cache_dir
from vireid.data.loaders import TrainingViews
from vireid.data.registry import open_dataset
from vireid.data.synthetic import generate_synthetic, sysu_camera_pairs
from vireid.engine.checkpoint import save_checkpoint
from vireid.engine.cmc import CMCTrainer, ContrastTarget, cmc_optimizer
from vireid.engine.context import RunContext
from vireid.engine.device import select_device
from vireid.engine.evaluate import Evaluator
from vireid.engine.mmlm import SharedLabels, mmlm_stage
from vireid.engine.pipeline import wrap_model
from vireid.engine.run import RunFolder
from vireid.engine.sca import SCATrainer, prepare_sca_model, sca_optimizer
from vireid.engine.trainset import TrainSet, build_train_set, training_loader
from vireid.errors import NoClustersError
from vireid.models import create_model, unwrap_model


@dataclass(frozen=True)
class Target:
    """A dataset's size: training ids and images per modality, test ids."""

    train_ids: int
    visible: int
    infrared: int
    test_ids: int


SYSU_MM01 = Target(train_ids=395, visible=22258, infrared=11909, test_ids=96)
TINY = Target(train_ids=6, visible=60, infrared=30, test_ids=3)
# The tiny run: the smoke preset's sizes on top of the sysu preset, whose schedule is projected.
TINY_OVERRIDES = ["data.height=64", "data.width=32", "data.eval_batch_size=64", "data.workers=0",
                  "model.arch=resnet18", "model.amp=false", "model.channels_last=false",
                  "cluster.k1=10", "cluster.k2=3", "cluster.mixed_k1=12", "cluster.mixed_k2=6",
                  "cluster.min_samples=2", "cluster.knn_block=512", "cmc.iterations=2", "cmc.batch_size=8",
                  "cmc.num_instances=4", "mmlm.kmeans_iterations=10", "sca.num_ids=2", "sca.iterations=2"]


@dataclass(frozen=True)
class Shape:
    """Generator parameters and the images they give."""

    ids: int
    images_per_camera: int
    seed: int
    test_fraction: float
    train_visible: int
    train_infrared: int
    test_visible: int
    test_infrared: int


def closest_shape(target: Target, seeds: range = range(32), max_per_camera: int = 80) -> Shape:
    """The images per camera and seed whose training set is nearest `target` (sum of the two
    modalities' relative errors); ids and split are exact."""
    ids = target.train_ids + target.test_ids
    fraction = target.test_ids / ids
    best: tuple[float, Shape] | None = None
    for seed in seeds:
        pairs = sysu_camera_pairs(ids, seed, fraction)
        (tv, tr), (sv, sr) = pairs["train"], pairs["test"]
        for k in range(1, max_per_camera + 1):
            err = abs(k * tv - target.visible) / target.visible + abs(k * tr - target.infrared) / target.infrared
            if best is None or err < best[0]:
                best = (err, Shape(ids, k, seed, fraction, k * tv, k * tr, k * sv, k * sr))
    return best[1]


def bench_config(args: argparse.Namespace, root: Path) -> Config:
    overrides = [f"data.root={root}", "data.dataset=sysu", "model.pretrained=none", f"device={args.device}"]
    if args.tiny:
        overrides += TINY_OVERRIDES
    if args.weights:
        overrides += ["model.pretrained=imagenet", f"model.weights_path={args.weights}"]
    return load_config("sysu", overrides + list(args.set))


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()} ({torch.get_num_threads()} torch threads)"


def seconds(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """Wall seconds of `fn()` with the device drained before and after, and its result."""
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


def say(text: str) -> None:
    print(text, flush=True)


# ---------------------------------------------------------------- throughput of one training step
def one_step_views(train: TrainSet, ctx: RunContext, batch: int, seed: int) -> tuple[tuple, list[torch.Tensor]]:
    """A random CMC step's indices and its three augmented views (main process)."""
    rng = np.random.default_rng(seed)
    step = (rng.choice(len(train.visible), batch), rng.choice(len(train.infrared), batch))
    views = TrainingViews(train.visible.images, train.infrared.images, ctx.train_transforms())(step)
    return step, views


def step_throughput(model: torch.nn.Module, cfg: Config, ctx: RunContext, train: TrainSet, iters: int) -> dict:
    """The CMC step on one fixed batch on the device against the bare backbone on the same images."""
    b = cfg.cmc.batch_size
    augment_s, (step, views) = seconds(lambda: one_step_views(train, ctx, b, seed=0), torch.device("cpu"))
    fmt = torch.channels_last if ctx.channels_last and ctx.device.type == "cuda" else torch.contiguous_format
    views = [v.to(ctx.device).contiguous(memory_format=fmt) for v in views]
    trainer = CMCTrainer(model, train, cfg.cmc, cfg.cluster, ctx)
    clusters = 64
    centroids = torch.nn.functional.normalize(torch.randn(clusters, unwrap_model(model).feature_dim), dim=1)
    target = ContrastTarget(np.arange(len(train.visible)) % clusters, np.arange(len(train.infrared)) % clusters,
                            trainer.memory(centroids), trainer.memory(centroids))
    optimizer, _ = cmc_optimizer(model, cfg.cmc)
    model.train()
    cmc = lambda: trainer.contrast_step(views, step, target, optimizer)  # noqa: E731
    out = {"images_per_step": 3 * b, "augment_one_step_s": augment_s}
    x = torch.cat(views)
    for name, stride in (("bare", 2), ("bare_last_stride_1", 1)):
        net = bare_resnet(cfg.model.arch, stride, ctx.device, fmt == torch.channels_last, cfg.model.compile)
        fn = bare_step(net, x, ctx)
        out[f"{name}_first_call_s"] = time_it(fn, 1, ctx.device, time.perf_counter)
        out[f"{name}_step_s"] = time_it(fn, iters, ctx.device, time.perf_counter)
        del net
    out["cmc_first_call_s"] = time_it(cmc, 1, ctx.device, time.perf_counter)
    cmc()
    out["cmc_step_s"] = time_it(cmc, iters, ctx.device, time.perf_counter)
    return out


def pipeline_throughput(cfg: Config, ctx: RunContext, train: TrainSet, steps: int) -> dict:
    """Images/s of `training_loader` (augmentation in `data.workers` processes), the first batch
    (worker start-up) timed apart."""
    b = cfg.cmc.batch_size
    rng = np.random.default_rng(1)
    plan = [(rng.choice(len(train.visible), b), rng.choice(len(train.infrared), b)) for _ in range(steps)]
    loader = iter(training_loader(plan, train, ctx, seed=1))
    t0 = time.perf_counter()
    next(loader)
    t1 = time.perf_counter()
    for _ in loader:
        pass
    t2 = time.perf_counter()
    return {"workers": ctx.workers, "first_batch_s": t1 - t0,
            "images_per_s": 3 * b * (steps - 1) / max(t2 - t1, 1e-9)}


# ---------------------------------------------------------------- one epoch of each stage
def scaled(wall: float, train_s: float, timed: int, full: int) -> float:
    """An epoch's projected seconds: its untimed-by-steps part whole, its training steps scaled."""
    return wall - train_s + train_s * full / max(timed, 1)


def time_cmc(model: torch.nn.Module, cfg: Config, ctx: RunContext, train: TrainSet, iterations: int) -> dict:
    """One epoch of each CMC phase (the first of each; phase 2 clusters the mixed set too)."""
    cmc = replace(cfg.cmc, iterations=iterations)
    trainer = CMCTrainer(model, train, cmc, cfg.cluster, ctx)
    out = {}
    for phase, global_epoch in ((1, 0), (2, cfg.cmc.phase1_epochs)):
        optimizer, _ = cmc_optimizer(model, cfg.cmc)
        wall, (record, _, _) = seconds(lambda: trainer.epoch(phase, 0, global_epoch, optimizer), ctx.device)
        out[f"phase{phase}"] = {
            "wall_s": wall, "cluster_s": record["seconds_cluster"], "train_s": record["seconds_train"],
            "iterations_timed": iterations, "iterations": cfg.cmc.iterations,
            "epoch_s": scaled(wall, record["seconds_train"], iterations, cfg.cmc.iterations),
            "clusters": {k: record[k] for k in record if k.startswith("clusters_")}}
    return out


def true_identity_labels(train: TrainSet) -> SharedLabels:
    """The true identities as one label space 0..K-1 for both modalities."""
    pids = np.unique(np.r_[train.visible.pids, train.infrared.pids])
    return SharedLabels(np.searchsorted(pids, train.visible.pids), np.searchsorted(pids, train.infrared.pids),
                        len(pids))


def time_sca(cfg: Config, ctx: RunContext, train: TrainSet, iterations: int) -> dict:
    """One SCA epoch after warm-up with every loss term on (confidence pass included)."""
    shared = true_identity_labels(train)
    model = wrap_model(prepare_sca_model(create_model(cfg.model), shared, ctx.device), cfg.model, ctx.device)
    s = cfg.sca
    epoch = max(s.warmup_epochs, s.intra_start, s.inter_start)
    full = len(SCATrainer(model, train, shared, s, ctx).batches(epoch))
    warmup_steps = len(SCATrainer(model, train, shared, s, ctx).batches(0)) if s.warmup_epochs else 0
    timed = replace(s, iterations=min(iterations, full) if iterations else full, lr=s.lr * 1e-3)
    trainer = SCATrainer(model, train, shared, timed, ctx)
    optimizer, _ = sca_optimizer(model, timed)
    wall, record = seconds(lambda: trainer.epoch(epoch, optimizer), ctx.device)
    steps = record["iterations"]
    per_step = record["seconds_train"] / max(steps, 1)
    rest = wall - record["seconds_train"] - record["seconds_confidence"]
    return {"wall_s": wall, "confidence_s": record["seconds_confidence"], "train_s": record["seconds_train"],
            "iterations_timed": steps, "iterations": full, "step_s": per_step,
            "epoch_s": scaled(wall, record["seconds_train"], steps, full),
            "warmup_iterations": warmup_steps, "warmup_epoch_s": rest + per_step * warmup_steps,
            "epoch_timed": epoch, "model": model}


def time_evaluation(model: torch.nn.Module, dataset: Any, cfg: Config, ctx: RunContext) -> dict:
    """The full evaluation twice: the first also decodes the test images into the cache."""
    evaluator = Evaluator(dataset, ctx, cfg.eval.trials, cfg.eval.max_rank)
    first, results = seconds(lambda: evaluator(model, "benchmark"), ctx.device)
    again, _ = seconds(lambda: evaluator(model, "benchmark"), ctx.device)
    return {"first_s": first, "eval_s": again, "protocols": sorted(results or {})}


def time_checkpoint(model: torch.nn.Module, cfg: Config, folder: Path) -> float:
    optimizer, _ = cmc_optimizer(model, cfg.cmc)
    t0 = time.perf_counter()
    save_checkpoint(folder / "last.pt", model=model, optimizer=optimizer, stage="cmc", epoch=0,
                    config=config_to_dict(cfg))
    return time.perf_counter() - t0


# ---------------------------------------------------------------- projection
def evaluations_in_stage(epochs: int, every: int) -> int:
    """Evaluations a stage of `epochs` epochs triggers: every `every` epochs but the last
    (PeriodicEvaluator), plus the one after the stage (Pipeline)."""
    if epochs <= 0:
        return 0
    periodic = sum(1 for e in range(epochs) if every > 0 and (e + 1) % every == 0 and e + 1 < epochs)
    return periodic + 1


def projection(cfg: Config, cmc: dict, mmlm_s: float, sca: dict, eval_s: float, checkpoint_s: float
               ) -> list[tuple[str, int, float]]:
    """(item, count, seconds each) of the whole schedule; total = Σ count × seconds."""
    c, s = cfg.cmc, cfg.sca
    cmc_epochs = c.phase1_epochs + c.phase2_epochs
    evals = evaluations_in_stage(cmc_epochs, cfg.eval.every) + evaluations_in_stage(s.epochs, cfg.eval.every)
    named_checkpoints = 2  # cmc.pt and final.pt
    return [("CMC phase 1 epoch", c.phase1_epochs, cmc["phase1"]["epoch_s"]),
            ("CMC phase 2 epoch", c.phase2_epochs, cmc["phase2"]["epoch_s"]),
            ("MMLM", 1, mmlm_s),
            ("SCA warm-up epoch", min(s.warmup_epochs, s.epochs), sca["warmup_epoch_s"]),
            ("SCA epoch", max(s.epochs - s.warmup_epochs, 0), sca["epoch_s"]),
            (f"evaluation (eval.every {cfg.eval.every})", evals, eval_s),
            ("checkpoint", cmc_epochs + s.epochs + named_checkpoints, checkpoint_s)]


def hours(total: float) -> str:
    return f"{int(total // 3600)}h {int(total % 3600 // 60):02d}m"


# ---------------------------------------------------------------- the run
def build_data(args: argparse.Namespace) -> tuple[Path, Shape, float]:
    target = TINY if args.tiny else SYSU_MM01
    shape = closest_shape(target)
    say(f"target: {target.train_ids} training ids, {target.visible} visible + {target.infrared} infrared images, "
        f"{target.test_ids} test ids")
    say(f"synthetic: {shape.ids} ids, {shape.images_per_camera} images per (person, camera), seed {shape.seed}: "
        f"{target.train_ids} training ids with {shape.train_visible} visible "
        f"({100 * (shape.train_visible / target.visible - 1):+.1f} %) + {shape.train_infrared} infrared "
        f"({100 * (shape.train_infrared / target.infrared - 1):+.1f} %) images; {target.test_ids} test ids with "
        f"{shape.test_visible} visible + {shape.test_infrared} infrared images")
    height, width = (64, 32) if args.tiny else (288, 144)
    base = Path(args.data) if args.data else resolve_cache_dir(Config()) / "synthetic"
    root = base / f"sysu-scale-{shape.ids}ids-{shape.images_per_camera}x-{height}x{width}-s{shape.seed}"
    workers = args.gen_workers or os.cpu_count() or 1
    t0 = time.perf_counter()
    generate_synthetic(root, layout="sysu", ids=shape.ids, images_per_camera=shape.images_per_camera,
                       height=height, width=width, seed=shape.seed, test_fraction=shape.test_fraction,
                       progress=not args.tiny, workers=workers)
    generated = time.perf_counter() - t0
    say(f"data: {root} ({generated:.1f} s with {workers} generator workers; reused when already there)")
    return root, shape, generated


def run(args: argparse.Namespace) -> dict:
    root, shape, generated = build_data(args)
    cfg = bench_config(args, root)
    device = select_device(cfg.device)
    torch.backends.cudnn.benchmark = device.type == "cuda"  # as a non-deterministic run has it
    torch.manual_seed(0)
    result: dict = {"device": device_name(device), "shape": asdict(shape), "generate_s": generated,
                    "config": {"arch": cfg.model.arch, "size": [cfg.data.height, cfg.data.width],
                               "amp": cfg.model.amp, "channels_last": cfg.model.channels_last,
                               "compile": cfg.model.compile, "workers": cfg.data.workers}}
    say(f"device: {result['device']}; sysu preset{' at tiny scale' if args.tiny else ''}: {cfg.model.arch} "
        f"{cfg.data.height}x{cfg.data.width}, amp {cfg.model.amp}, channels_last {cfg.model.channels_last}, "
        f"compile {cfg.model.compile}, data.workers {cfg.data.workers}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = RunFolder(Path(tmp) / "run", config=cfg, console=False)
        try:
            ctx = RunContext.from_config(cfg, folder, device)
            dataset = open_dataset("sysu", root)
            cache_s, train = seconds(lambda: build_train_set(dataset, cfg.data.height, cfg.data.width,
                                                             ctx.cache_dir), device)
            say(f"train set: {len(train.visible)} visible + {len(train.infrared)} infrared images of "
                f"{len(np.unique(train.visible.pids))} ids (image cache {cache_s:.1f} s, once)")
            result["train_images"] = [len(train.visible), len(train.infrared)]
            model = wrap_model(create_model(cfg.model), cfg.model, device)
            measure_all(args, cfg, ctx, train, dataset, model, Path(tmp), result)
        finally:
            folder.close()
    return result


def measure_all(args: argparse.Namespace, cfg: Config, ctx: RunContext, train: TrainSet, dataset: Any,
                model: torch.nn.Module, tmp: Path, result: dict) -> None:
    iters = 1 if args.tiny else args.step_iters
    step = step_throughput(model, cfg, ctx, train, iters)
    result["step"] = step
    n = step["images_per_step"]
    say(f"timed training step ({n} images, fixed batch on the device): CMC {step['cmc_step_s'] * 1e3:.1f} ms "
        f"= {n / step['cmc_step_s']:.0f} images/s; bare {cfg.model.arch} fwd+bwd {step['bare_step_s'] * 1e3:.1f} ms "
        f"(ratio {step['cmc_step_s'] / step['bare_step_s']:.2f}), with last stride 1 "
        f"{step['bare_last_stride_1_step_s'] * 1e3:.1f} ms (ratio "
        f"{step['cmc_step_s'] / step['bare_last_stride_1_step_s']:.2f}); first calls {step['cmc_first_call_s']:.1f} s "
        f"/ {step['bare_first_call_s']:.1f} s")
    pipe = pipeline_throughput(cfg, ctx, train, steps=3 if args.tiny else args.pipeline_steps)
    result["pipeline"] = pipe
    one_process = n / step["augment_one_step_s"]
    device_rate = n / step["cmc_step_s"]
    say(f"timed input pipeline: {pipe['images_per_s']:.0f} images/s with data.workers {pipe['workers']} "
        f"(first batch {pipe['first_batch_s']:.1f} s); one process augments {one_process:.0f} images/s; the device "
        f"trains {device_rate:.0f} images/s, so it needs about {math.ceil(device_rate / one_process)} augmenting "
        f"processes (data.workers), one CPU core each")
    cmc = time_cmc(model, cfg, ctx, train, args.cmc_iterations or cfg.cmc.iterations)
    result["cmc"] = cmc
    for phase in (1, 2):
        p = cmc[f"phase{phase}"]
        say(f"timed cmc phase {phase} epoch: {p['wall_s']:.1f} s (features + clustering {p['cluster_s']:.1f} s, "
            f"{p['iterations_timed']} of {p['iterations']} iterations {p['train_s']:.1f} s) -> {p['epoch_s']:.1f} s "
            f"per epoch; clusters {p['clusters']}")
    mmlm_s, _ = seconds(lambda: mmlm_stage(unwrap_model(model), train, cfg.mmlm, cfg.cluster, ctx), ctx.device)
    result["mmlm_s"] = mmlm_s
    say(f"timed mmlm: {mmlm_s:.1f} s")
    sca = time_sca(cfg, ctx, train, args.sca_iterations)
    sca_model = sca.pop("model")
    result["sca"] = sca
    say(f"timed sca epoch {sca['epoch_timed'] + 1}: {sca['wall_s']:.1f} s (confidence pass {sca['confidence_s']:.1f} s, "
        f"{sca['iterations_timed']} of {sca['iterations']} iterations {sca['train_s']:.1f} s) -> {sca['epoch_s']:.1f} s "
        f"per epoch; a warm-up epoch ({sca['warmup_iterations']} iterations, no confidence pass) "
        f"{sca['warmup_epoch_s']:.1f} s")
    ev = time_evaluation(sca_model, dataset, cfg, ctx)
    result["evaluation"] = ev
    say(f"timed evaluation ({', '.join(ev['protocols'])}; {cfg.eval.trials} trials): {ev['eval_s']:.1f} s "
        f"(first {ev['first_s']:.1f} s, decoding the test images once)")
    ckpt = time_checkpoint(model, cfg, tmp)
    result["checkpoint_s"] = ckpt
    say(f"timed checkpoint: {ckpt:.2f} s")
    items = projection(cfg, cmc, mmlm_s, sca, ev["eval_s"], ckpt)
    total = sum(count * each for _, count, each in items)
    result["projection"] = {"items": [{"item": i, "count": c, "seconds_each": s} for i, c, s in items],
                            "total_s": total}
    say(f"projection of the sysu schedule on {result['device']} (count x seconds each = seconds):")
    for item, count, each in items:
        say(f"  {item:32s} {count:4d} x {each:9.2f} s = {count * each:10.1f} s")
    say(f"projected total: {total:.0f} s = {hours(total)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] + " " + __doc__.split("\n")[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    ap.add_argument("--tiny", action="store_true", help="few ids, 64x32, resnet18, two iterations (for tests)")
    ap.add_argument("--data", default="", help="folder for the cached synthetic set (default: the image cache folder)")
    ap.add_argument("--gen-workers", type=int, default=0, help="generator processes (0: one per CPU)")
    ap.add_argument("--weights", default="", help="a local torchvision ResNet state dict (model.weights_path)")
    ap.add_argument("--cmc-iterations", type=int, default=0, help="CMC steps timed per epoch (0: the preset's)")
    ap.add_argument("--sca-iterations", type=int, default=0, help="SCA steps timed (0: the full epoch)")
    ap.add_argument("--step-iters", type=int, default=10, help="steps of the fixed-batch timing")
    ap.add_argument("--pipeline-steps", type=int, default=24, help="batches of the input pipeline timing")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a config override")
    ap.add_argument("--json", default="", help="also write every number to this JSON file")
    args = ap.parse_args()
    try:
        result = run(args)
    except NoClustersError as err:
        sys.exit(f"sysu_scale: {err}; random weights clustered into nothing: pass --weights (ImageNet ResNet) "
                 "or --set cluster.eps=0.8")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
