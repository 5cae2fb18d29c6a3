"""The whole MMM pipeline in one call: CMC → MMLM → SCA, evaluation, checkpoints, resume.

`Pipeline` is the one place that knows the stage order, the checkpoint names and how to resume.
Resume works at epoch granularity: every epoch of every stage ends with `checkpoints/last.pt`
(model, optimiser, scheduler, stage, epoch, RNG states, and the SCA stage's shared labels). A
resumed run rebuilds the models, loads that state, restores the RNGs and continues with the next
epoch, so in deterministic mode it ends with the same numbers as an uninterrupted run. The epoch
before is kept as `prev.pt`: a damaged `last.pt` costs one epoch, not the run.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from vireid.config import Config
from vireid.data.registry import DatasetReader
from vireid.data.samplers import IdentitySampler
from vireid.engine import distributed
from vireid.engine.checkpoint import restore_rng
from vireid.engine.cmc import cmc_stage
from vireid.engine.context import RunContext
from vireid.engine.device import seed_everything, select_device, set_deterministic, wrap_model  # noqa: F401 - wrap_model re-exported
from vireid.engine.evaluate import Evaluator
from vireid.engine.hooks import Checkpointer, Hook, MetricsLogger, PeriodicEvaluator
from vireid.engine.mmlm import SharedLabels, mixed_shared_labels, mmlm_stage, oracle_shared_labels
from vireid.engine.preflight import open_run, report_plan
from vireid.engine.reuse import holds_run
from vireid.engine.run import RunFolder
from vireid.engine.sca import prepare_sca_model, sca_stage
from vireid.engine.trainset import TrainSet
from vireid.errors import NoClustersError, VireidError
from vireid.models.factory import create_model, load_trained_weights, unwrap_model
from vireid.viz import plot_cmc, plot_training_curves

STAGE_ORDER = ("cmc", "mmlm", "sca", "done")  # a checkpoint's `stage` is the stage it resumes into


@dataclass
class RunResult:
    """What `train` hands back: final metrics per protocol (rank 0), per-stage summaries (evaluation
    after each stage, MMLM's matching summary), the checkpoints written, and the final model."""

    final: dict
    summaries: dict[str, dict] = field(default_factory=dict)
    checkpoints: dict[str, Path] = field(default_factory=dict)
    run_dir: Path = Path(".")
    model: nn.Module | None = None


class Pipeline:
    """Runs the configured stages in order, each skipped when the resume state is past it."""

    def __init__(self, cfg: Config, ctx: RunContext, dataset: DatasetReader, train_set: TrainSet,
                 resume: dict | None = None, hooks: Sequence[Hook] = ()) -> None:
        self.cfg, self.ctx, self.train_set, self.resume = cfg, ctx, train_set, resume
        self.evaluator = Evaluator(dataset, ctx, cfg.eval.trials, cfg.eval.max_rank)
        self.checkpointer = Checkpointer(ctx.run.checkpoints, cfg)
        ctx.hooks = [MetricsLogger(ctx.run), PeriodicEvaluator(self.evaluator, cfg.eval.every), self.checkpointer,
                     *hooks]
        self.summaries: dict[str, dict] = {}

    # -- resume state ---------------------------------------------------------------------------
    def _at(self, stage: str) -> bool:
        return self.resume is not None and self.resume["stage"] == stage

    def _past(self, stage: str) -> bool:
        return self.resume is not None and STAGE_ORDER.index(self.resume["stage"]) > STAGE_ORDER.index(stage)

    def _stage_resume(self, model: nn.Module, stage: str) -> dict | None:
        """Load the checkpoint's weights and RNG states when it belongs to `stage`; its optimiser state."""
        if not self._at(stage):
            return None
        self._load_weights(model)
        restore_rng(self.resume)
        return {"epoch": self.resume["epoch"], "optimizer": self.resume["optimizer"],
                "scheduler": self.resume["extra"].get("scheduler")}

    def _load_weights(self, model: nn.Module) -> None:
        load_trained_weights(model, self.resume["model"], self.resume.get("path", "being resumed"),
                             stored_arch=self.resume["config"]["model"]["arch"])

    def _wrap(self, model: nn.Module) -> nn.Module:
        return wrap_model(model, self.cfg.model, self.ctx.device)

    # -- stages ---------------------------------------------------------------------------------
    def run(self) -> nn.Module:
        """CMC → MMLM → SCA as configured; returns the final model. A stage that finds no clusters
        stops the run with a NoClustersError naming the settings to change."""
        stages = self.cfg.stages
        if self._at("done"):  # a finished run: only re-evaluate
            model = create_model(self.cfg.model, int(self.resume["extra"].get("num_classes", 0)), pretrained=False)
            self._load_weights(model)
            return self._wrap(model)
        model = self._wrap(create_model(self.cfg.model))
        try:
            if "cmc" in stages:
                self._cmc(model)
            if "mmlm" in stages or "sca" in stages:
                shared = self._shared_labels(model)
                if "sca" in stages:
                    model = self._sca(model, shared)
        except NoClustersError as err:
            raise NoClustersError(self._no_clusters_advice(err)) from None
        return model

    def _no_clusters_advice(self, err: NoClustersError) -> str:
        """The reason, the two settings to change, and whether the run folder can be reused."""
        c, run = self.cfg.cluster, self.ctx.run
        folder = (f"nothing was saved, so the same command with other settings reuses {run.path}"
                  if not holds_run(run.path) else
                  f"{run.path} keeps the checkpoints so far; start the new settings in another --output")
        radii = "".join(f", {k} {getattr(c, k)}" for k in ("eps_visible", "eps_infrared", "eps_mixed") if getattr(c, k))
        return (f"{err}; the run cannot go on. Try a larger cluster.eps (now {c.eps}{radii}) and/or a smaller "
                f"cluster.min_samples (now {c.min_samples}), or better start weights (model.pretrained); {folder}")

    def _cmc(self, model: nn.Module) -> None:
        if self._past("cmc"):
            if self._at("mmlm"):  # CMC finished, matching not yet saved in an SCA checkpoint
                self._load_weights(model)
            return
        resume = self._stage_resume(model, "cmc")
        result = cmc_stage(model, self.train_set, self.cfg.cmc, self.cfg.cluster, self.ctx, resume)
        self._end_of_stage("cmc", model)
        self.summaries["cmc"]["epochs"] = result.epochs
        self.checkpointer.save("cmc.pt", model, "mmlm", -1)  # after evaluation: resume starts at MMLM

    def _shared_labels(self, model: nn.Module) -> SharedLabels:
        """MMLM's labels (or the mixed clustering's without MMLM); recomputed unless an SCA
        checkpoint already holds them (MMLM is deterministic)."""
        if self._at("sca"):
            extra = self.resume["extra"]
            shared = SharedLabels(extra["labels_visible"].numpy(), extra["labels_infrared"].numpy(),
                                  int(extra["num_classes"]))
        else:
            if self._at("mmlm"):
                restore_rng(self.resume)
            cfg = self.cfg
            if "mmlm" in cfg.stages and cfg.mmlm.oracle_precision >= 0:
                shared = oracle_shared_labels(unwrap_model(model), self.train_set, cfg.mmlm, cfg.cluster, self.ctx)
            elif "mmlm" in cfg.stages and cfg.mmlm.enabled:
                shared = mmlm_stage(unwrap_model(model), self.train_set, cfg.mmlm, cfg.cluster, self.ctx)
            else:
                shared = mixed_shared_labels(unwrap_model(model), self.train_set, cfg.cluster, self.ctx)
            self.summaries["mmlm"] = shared.summary
        if shared.num_classes == 0:
            raise NoClustersError("the shared label space is empty (no infrared clusters)")
        self.checkpointer.extra.update(labels_visible=torch.from_numpy(shared.labels_v),
                                       labels_infrared=torch.from_numpy(shared.labels_r),
                                       num_classes=shared.num_classes)
        return shared

    def _sca(self, model: nn.Module, shared: SharedLabels) -> nn.Module:
        # the SCA sampler needs identities with enough samples in both modalities
        IdentitySampler(shared.labels_v, shared.labels_r, num_instances=self.cfg.sca.num_instances)
        if self.cfg.sca.init == "pretrained":
            model = create_model(self.cfg.model)
        model = self._wrap(prepare_sca_model(unwrap_model(model), shared, self.ctx.device))
        resume = self._stage_resume(model, "sca")
        result = sca_stage(model, self.train_set, shared, self.cfg.sca, self.ctx, resume)
        self.checkpointer.save("final.pt", model, "done", self.cfg.sca.epochs - 1)
        self._end_of_stage("sca", model)
        self.summaries["sca"]["epochs"] = result.epochs
        return model

    def _end_of_stage(self, stage: str, model: nn.Module) -> None:
        """Evaluate the stage's model, keep its headline numbers, and tell the hooks."""
        results = self.evaluator(model, stage)
        self.summaries[stage] = {"eval": {name: {k: v for k, v in res.items() if k not in ("trials", "cmc")}
                                          for name, res in (results or {}).items()}}
        self.ctx.after_stage(stage, model)


def train(cfg: Config, resume: bool = False, hooks: Sequence[Hook] = ()) -> RunResult:
    """Run the configured stages on the configured dataset (one process or one rank of torchrun).

    Inputs and outputs are checked, and the images decoded, before the run folder is created; the
    folder stays locked against other writers until the run ends (`preflight.open_run`). A VireidError
    stops the run with its reason in log.txt; a RunStoppedError (no clusters) writes no
    final_metrics.json, so nothing looks finished. Ranks other than 0 write nothing and, under torchrun,
    show no Python warnings (rank 0 shows each once).
    """
    device = distributed.init_from_environment(select_device(cfg.device))
    set_deterministic(cfg.deterministic)
    rank = distributed.world()[0]
    finished = False
    with warnings.catch_warnings():
        if rank:
            warnings.simplefilter("ignore")
        try:
            plan, run = open_run(cfg, resume)
        except BaseException as err:  # a VireidError here is every rank's: they leave together
            distributed.shutdown(clean=isinstance(err, VireidError))
            raise
        seed_everything(cfg.seed + rank)  # after the (cached or not) start weights: same run either way
        try:
            run.log(f"vireid run in {run.path} on {device}; stages {', '.join(cfg.stages)}\n{plan.dataset.describe()}")
            state = report_plan(run, plan, resume)
            ctx = RunContext.from_config(cfg, run, device)
            pipe = Pipeline(cfg, ctx, plan.dataset, plan.train_set, state, hooks)
            model = pipe.run()
            final = pipe.evaluator.last if pipe.evaluator.done else pipe.evaluator(model, "final")
            if distributed.is_main():
                run.write_json("final_metrics.json", final)
                _plots(run, final, model)
                run.log(f"done: {run.path / 'final_metrics.json'}")
            finished = True
            return RunResult(final or {}, pipe.summaries, dict(pipe.checkpointer.saved), run.path, unwrap_model(model))
        except VireidError as err:
            run.log(f"stopped: {err}", level=logging.ERROR, console=False)  # the command line prints it once
            raise
        except KeyboardInterrupt:
            run.log("interrupted; `--resume` continues from the last finished epoch", level=logging.WARNING,
                    console=False)
            raise
        except Exception:
            run.log("stopped by an unexpected error", level=logging.ERROR, console=False)
            logging.getLogger("vireid").debug("traceback", exc_info=True, extra={"file_only": True})
            raise
        finally:
            run.close()
            plan.release()
            distributed.shutdown(clean=finished)


def _plots(run: RunFolder, final: dict | None, model: nn.Module) -> None:
    """CMC curves and training curves into plots/ (best effort: a plot never fails a run)."""
    try:
        curves = {name: np.array(res.get("cmc", [])) for name, res in (final or {}).items() if res.get("cmc")}
        if curves:
            plot_cmc(curves, run.path / "plots" / "cmc.png")
        plot_training_curves(run.path / "metrics.jsonl", run.path / "plots")
    except Exception as err:  # noqa: BLE001 - plots are a convenience
        run.log(f"plots skipped: {type(err).__name__}: {err}")
