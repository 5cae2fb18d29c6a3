"""The whole MMM pipeline in one call: CMC → MMLM → SCA, evaluation, checkpoints, resume.

Resume works at epoch granularity: every epoch of every stage ends with `checkpoints/last.pt`
(model, optimiser, scheduler, stage, epoch, RNG states, and the SCA stage's shared labels). A
resumed run rebuilds the models, loads that state, restores the RNGs and continues with the next
epoch, so in deterministic mode it ends with the same numbers as an uninterrupted run.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from vireid.config import Config, config_to_dict
from vireid.engine.checkpoint import load_checkpoint, restore_rng, save_checkpoint, unwrap_model
from vireid.engine.mmlm import SharedLabels, mixed_shared_labels, mmlm_stage
from vireid.engine.trainset import TrainSet, build_train_set, sample_embedder
from vireid.errors import NoClustersError


def model_from_config(cfg: Config, pretrained: str | None = None, num_classes: int = 0):
    """The two-stream AGW model as `cfg.model` describes it."""
    from vireid.models import build_model

    m = cfg.model
    return build_model(arch=m.arch, pretrained=pretrained or m.pretrained, weights_path=m.weights_path or None,
                       nonlocal_blocks=m.nonlocal_blocks, nonlocal_channels=m.nonlocal_channels,
                       last_stride=m.last_stride, gem_p=m.gem_p, num_classes=num_classes)


def _wrap(model, cfg: Config, device):
    """Move to the device; under torchrun, wrap in DDP (optionally with SyncBatchNorm)."""
    from vireid.engine.distributed import is_distributed

    model = model.to(device)
    if cfg.model.channels_last and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    if not is_distributed():
        return model
    if cfg.model.sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


class Pipeline:
    """Holds what the stages share (config, run folder, data, device) and the resume state."""

    def __init__(self, cfg: Config, run, dataset, train_set: TrainSet, device: torch.device,
                 resume: dict | None) -> None:
        self.cfg, self.run, self.dataset, self.train_set, self.device = cfg, run, dataset, train_set, device
        self.resume = resume
        self.shared: SharedLabels | None = None
        self.last_results: dict | None = None  # rank 0 only
        self.evaluated = False  # on every rank, so all ranks agree on whether to evaluate again

    # -- checkpoints --------------------------------------------------------------------------
    def checkpoint(self, model, name: str, stage: str, epoch: int, optimizer=None, scheduler=None,
                   memories=None) -> None:
        from vireid.engine.distributed import is_main

        if not is_main():
            return
        extra: dict[str, Any] = {}
        if scheduler is not None:
            extra["scheduler"] = scheduler.state_dict()
        if self.shared is not None:
            extra.update(labels_visible=torch.from_numpy(self.shared.labels_v),
                         labels_infrared=torch.from_numpy(self.shared.labels_r),
                         num_classes=self.shared.num_classes)
        save_checkpoint(self.run.path / "checkpoints" / name, model=model, optimizer=optimizer, memories=memories,
                        stage=stage, epoch=epoch, config=config_to_dict(self.cfg), extra=extra)

    def epoch_saver(self, model):
        def on_epoch_end(stage, epoch, optimizer, scheduler, memories):
            self.checkpoint(model, "last.pt", stage, epoch, optimizer, scheduler, memories)
        return on_epoch_end

    def periodic_evaluator(self, model, stage_epochs: int):
        """`evaluate(stage, epoch_index)` for a stage to call after every epoch: it evaluates every
        `eval.every` epochs but not after the last one, which the pipeline evaluates itself."""
        every = self.cfg.eval.every

        def evaluate(stage, epoch):
            if every > 0 and (epoch + 1) % every == 0 and epoch + 1 < stage_epochs:
                self.evaluate(model, stage, epoch)
        return evaluate

    def stage_resume(self, stage: str) -> dict | None:
        """The resume checkpoint if it belongs to `stage`, flattened for the stage function."""
        if self.resume is None or self.resume["stage"] != stage:
            return None
        return {"epoch": self.resume["epoch"], "optimizer": self.resume["optimizer"],
                "scheduler": self.resume["extra"].get("scheduler")}

    def resumed_past(self, stage: str) -> bool:
        order = ["cmc", "mmlm", "sca", "done"]
        return self.resume is not None and order.index(self.resume["stage"]) > order.index(stage)

    # -- evaluation ---------------------------------------------------------------------------
    def evaluate(self, model, stage: str, epoch: int | None = None) -> dict | None:
        from vireid.engine.distributed import is_distributed, is_main
        from vireid.evaluation import format_table, run_protocols

        results = None
        if is_main():
            t0 = time.time()
            embed = sample_embedder(unwrap_model(model), self.cfg, self.device, key=f"{self.dataset.name}-test")
            results = run_protocols(embed, self.dataset, trials=self.cfg.eval.trials)
            self.run.log(f"evaluation after {stage}" + (f" epoch {epoch + 1}" if epoch is not None else "")
                         + f" ({time.time() - t0:.0f}s)\n" + format_table(results))
            for name, res in results.items():
                self.run.log_metrics("eval", stage=stage, epoch=epoch, protocol=name,
                                     **{k: v for k, v in res.items() if k not in ("trials", "cmc")})
            self.last_results = results
        self.evaluated = True
        if is_distributed():
            torch.distributed.barrier()
        return results


def _load_resume(cfg: Config, run_dir) -> dict | None:
    from vireid.engine.checkpoint import latest_checkpoint

    path = latest_checkpoint(run_dir)
    if path is None:
        return None
    return load_checkpoint(path)


def _provide_start_weights(cfg: Config) -> None:
    """`model.pretrained: synthetic` without a weights file: build (once, cached) the synthetic-source
    weights that stand in for ImageNet (see engine/pretrain.py); rank 0 builds, the others wait."""
    if cfg.model.pretrained != "synthetic" or cfg.model.weights_path:
        return
    from vireid.config import resolve_cache_dir
    from vireid.engine import distributed as dist_
    from vireid.engine.pretrain import synthetic_pretrained_weights

    if dist_.is_main():
        cfg.model.weights_path = str(synthetic_pretrained_weights(cfg, resolve_cache_dir(cfg)))
    if dist_.is_distributed():
        torch.distributed.barrier()
        cfg.model.weights_path = str(synthetic_pretrained_weights(cfg, resolve_cache_dir(cfg)))


def train(cfg: Config, resume: bool = False) -> dict:
    """Run the configured stages on the configured dataset; returns the final metrics."""
    from vireid.data.registry import open_dataset
    from vireid.engine import distributed as dist_
    from vireid.engine.device import seed_everything, select_device, set_deterministic
    from vireid.engine.run import RunFolder

    device = dist_.init_from_environment(select_device(cfg.device))
    set_deterministic(cfg.deterministic)
    rank, _ = dist_.world()
    dataset = open_dataset(cfg.data.dataset, cfg.data.root, trial=cfg.data.trial)
    _provide_start_weights(cfg)
    seed_everything(cfg.seed + rank)  # after the (cached or not) start weights: same run either way
    run = RunFolder(cfg.output, config=cfg, resume=resume, rank=rank)
    finished = False
    try:
        run.log(f"vireid run in {run.path} on {device}; stages {', '.join(cfg.stages)}\n{dataset.describe()}")
        train_set = build_train_set(dataset, cfg)
        state = _load_resume(cfg, run.path) if resume else None
        if state is not None:
            run.log(f"resuming after {state['stage']} epoch {state['epoch'] + 1}")
        pipe = Pipeline(cfg, run, dataset, train_set, device, state)
        model = _run_stages(pipe)
        final = pipe.last_results if pipe.evaluated else pipe.evaluate(model, "final")
        if dist_.is_main():
            run.write_json("final_metrics.json", final)
            _plots(pipe, model)
            run.log(f"done: {run.path / 'final_metrics.json'}")
        finished = True
        return final or {}
    finally:
        run.close()
        dist_.shutdown(clean=finished)


def _run_stages(pipe: Pipeline):
    """CMC → MMLM → SCA as configured; each skipped when the resume state is past it."""
    from vireid.engine.cmc import cmc_stage
    from vireid.engine.sca import prepare_sca_model, sca_stage

    cfg, run, device = pipe.cfg, pipe.run, pipe.device
    stages = list(cfg.stages)
    if pipe.resume is not None and pipe.resume["stage"] == "done":  # finished run: only re-evaluate
        shared_classes = int(pipe.resume["extra"].get("num_classes", 0))
        model = model_from_config(cfg, pretrained="none", num_classes=shared_classes)
        model.load_state_dict(pipe.resume["model"])
        return _wrap(model, cfg, device)
    model = _wrap(model_from_config(cfg), cfg, device)
    if "cmc" in stages:
        if pipe.resumed_past("cmc"):
            if pipe.resume["stage"] == "mmlm":  # CMC finished, matching not yet saved in an SCA checkpoint
                unwrap_model(model).load_state_dict(pipe.resume["model"])
        else:
            resume = pipe.stage_resume("cmc")
            if resume is not None:
                unwrap_model(model).load_state_dict(pipe.resume["model"])
                restore_rng(pipe.resume)
            try:
                cmc_stage(model, pipe.train_set, cfg, run, device, resume=resume,
                          on_epoch_end=pipe.epoch_saver(model),
                          evaluate=pipe.periodic_evaluator(model, cfg.cmc.phase1_epochs + cfg.cmc.phase2_epochs))
            except NoClustersError as err:
                run.log(f"WARNING: {err}. The CMC stage stops here.")
            pipe.evaluate(model, "cmc")
            pipe.checkpoint(model, "cmc.pt", "mmlm", -1)  # after evaluation: resume starts at MMLM
    if "sca" not in stages and "mmlm" not in stages:
        return model
    # MMLM: recomputed unless an SCA checkpoint already holds its labels (it is deterministic).
    if pipe.resume is not None and pipe.resume["stage"] == "sca":
        extra = pipe.resume["extra"]
        pipe.shared = SharedLabels(extra["labels_visible"].numpy(), extra["labels_infrared"].numpy(),
                                   int(extra["num_classes"]), {})
    else:
        if pipe.resume is not None and pipe.resume["stage"] == "mmlm":
            restore_rng(pipe.resume)
        try:
            if "mmlm" in stages and cfg.mmlm.enabled:
                pipe.shared = mmlm_stage(unwrap_model(model), pipe.train_set, cfg, run, device)
            else:
                pipe.shared = mixed_shared_labels(unwrap_model(model), pipe.train_set, cfg, run, device)
        except NoClustersError as err:  # no labels for SCA: report the model we have
            run.log(f"WARNING: {err}. Skipping the SCA stage; the final metrics are the CMC model's.")
            return model
        if pipe.shared.num_classes == 0:
            run.log("WARNING: the shared label space is empty. Skipping the SCA stage.")
            return model
    if "sca" not in stages:
        return model
    try:  # the SCA sampler needs identities with enough samples in both modalities
        from vireid.data.samplers import IdentitySampler

        IdentitySampler(pipe.shared.labels_v, pipe.shared.labels_r, num_instances=cfg.sca.num_instances)
    except NoClustersError as err:
        run.log(f"WARNING: {err}. Skipping the SCA stage; the final metrics are the CMC model's.")
        return model
    if cfg.sca.init == "pretrained":
        model = model_from_config(cfg)
    model = _wrap(prepare_sca_model(unwrap_model(model), pipe.shared, device), cfg, device)
    resume = pipe.stage_resume("sca")
    if resume is not None:
        unwrap_model(model).load_state_dict(pipe.resume["model"])
        restore_rng(pipe.resume)
    sca_stage(model, pipe.train_set, pipe.shared, cfg, run, device, resume=resume,
              on_epoch_end=pipe.epoch_saver(model), evaluate=pipe.periodic_evaluator(model, cfg.sca.epochs))
    pipe.checkpoint(model, "final.pt", "done", cfg.sca.epochs - 1)
    pipe.evaluate(model, "sca")
    return model


def _plots(pipe: Pipeline, model) -> None:
    """CMC curves and training curves into plots/ (best effort: a plot never fails a run)."""
    try:
        from vireid.viz import plot_cmc, plot_training_curves

        if pipe.last_results:
            curves = {name: np.array(res.get("cmc", [])) for name, res in pipe.last_results.items() if res.get("cmc")}
            if curves:
                plot_cmc(curves, pipe.run.path / "plots" / "cmc.png")
        plot_training_curves(pipe.run.path / "metrics.jsonl", pipe.run.path / "plots")
    except Exception as err:  # noqa: BLE001 - plots are a convenience
        pipe.run.log(f"plots skipped: {type(err).__name__}: {err}")
