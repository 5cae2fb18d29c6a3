"""Everything a run needs, checked before its folder exists: a run that cannot start leaves nothing.

`vireid train` used to create the run folder first and then meet a missing dataset, unreadable
start weights, an unwritable cache or an unreadable image; the folder then held a "run" that the
same command refused to reuse. `open_run` checks, in this order (cheapest first): the settings and
the number of processes; the output folder, under its lock (`engine/runlock.py`: a second run on the
same folder is refused, and two cannot both find it free); the dataset, the cache folder, the
checkpoint to resume from and the start weights; then it decodes every training and test image into
the image cache, so an unreadable image stops the run here. Only then is the run folder created.

Under torchrun rank 0 holds the lock for the job, every rank checks and decodes what it will read,
and each step ends with the ranks comparing outcomes (`distributed.agree`): a problem on any rank
stops every rank with the same message, which rank 0 alone prints.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from vireid.config import Config, resolve_cache_dir, validate
from vireid.data.image_cache import load_images
from vireid.data.registry import DatasetReader, open_dataset
from vireid.engine.checkpoint import latest_readable_checkpoint
from vireid.engine.distributed import agree, is_main, world
from vireid.engine.reuse import check_reuse
from vireid.engine.run import RunFolder
from vireid.engine.runlock import RunLock, acquire_run_folder
from vireid.engine.start_weights import resolve_start_weights
from vireid.engine.trainset import TrainSet, build_train_set
from vireid.errors import CheckpointError, ConfigError
from vireid.evaluation.protocols import evaluation_images
from vireid.fileio import check_writable_folder
from vireid.models.factory import create_model


@dataclass
class Plan:
    """What preflight found: the dataset, its decoded training images, the checkpoint to resume from
    (None: start from scratch), the newer checkpoints that could not be read (path, problem), to be
    reported in the run, and the run folder's lock (rank 0)."""

    dataset: DatasetReader
    state: dict | None = None
    damaged: list[tuple[Path, str]] = field(default_factory=list)
    train_set: TrainSet | None = None
    lock: RunLock | None = None

    def release(self) -> None:
        """Let go of the run folder (its lock file goes; so does a folder locking created, if still empty)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None


def open_run(cfg: Config, resume: bool) -> tuple[Plan, RunFolder]:
    """Check, lock, decode, then create the run folder (rank 0) on every rank of the job; the plan
    holds the lock until `plan.release()`. A VireidError on any rank stops them all before the folder
    exists (the folders that locking created are removed again)."""
    rank, world_size = world()
    lock, continuing = agree(lambda: check_outputs(cfg, resume, world_size, lock=rank == 0),
                             undo=lambda held: held[0] and held[0].release())
    try:
        plan = agree(lambda: preflight(cfg, continuing, decode_tests=rank == 0))
        plan.lock = lock
        run = agree(lambda: RunFolder(cfg.output, config=cfg, resume=resume, rank=rank))
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    return plan, run


def check_outputs(cfg: Config, resume: bool, world_size: int = 1, lock: bool = True) -> tuple[RunLock | None, bool]:
    """The settings and the output folder: the folder's lock (with `lock`; created for it, and released
    again on a refusal) and whether there is a run to continue there (`check_reuse`)."""
    validate(cfg)
    check_batches_cover_ranks(cfg, world_size)
    output = Path(cfg.output)
    check_writable_folder(output, "--output (setting 'output')")
    held = acquire_run_folder(output, command="a vireid training run") if lock else None
    try:
        return held, check_reuse(output, cfg, resume, created=held is not None and bool(held.created))
    except BaseException:
        if held is not None:
            held.release()
        raise


def preflight(cfg: Config, continuing: bool, decode_tests: bool = True) -> Plan:
    """Check the run's inputs and decode its images; a VireidError names the first problem. Writes only
    the image cache (and the start-weight providers of `model.pretrained`, e.g. the demo's, their cache).
    `continuing`: `check_outputs` found a run to resume. `decode_tests`: also decode the evaluation
    images (the rank that evaluates)."""
    dataset = open_dataset(cfg.data.dataset, cfg.data.root, trial=cfg.data.trial)
    cache_dir = resolve_cache_dir(cfg)
    check_writable_folder(cache_dir, "the image cache folder (data.cache_dir, else $VIREID_CACHE_DIR)")
    plan = Plan(dataset)
    if continuing:
        plan.state, plan.damaged = latest_readable_checkpoint(Path(cfg.output))
        if plan.state is not None:
            check_architecture(plan.state, cfg)
    if plan.state is None or plan.state.get("stage") != "done":
        check_start_weights(cfg)  # under DDP a barrier: every rank gets here (the checks above agree)
    plan.train_set = build_train_set(dataset, cfg.data.height, cfg.data.width, cache_dir)
    if decode_tests:
        load_images(evaluation_images(dataset, cfg.eval.trials), cfg.data.height, cfg.data.width, cache_dir,
                    key=f"{dataset.name}-test")
    return plan


def check_architecture(state: dict, cfg: Config) -> None:
    """Refuse a checkpoint written for another network than this run's."""
    stored = ((state.get("config") or {}).get("model") or {}).get("arch")
    if stored is not None and stored != cfg.model.arch:
        raise CheckpointError(f"checkpoint {state.get('path')} was written for {stored}, this run is "
                              f"{cfg.model.arch} (model.arch); resume with the run's own settings")


def check_start_weights(cfg: Config) -> None:
    """Resolve `model.pretrained` and build the model once from it, so a missing download, an
    unreadable file or weights of another network stop the run here (a second or two)."""
    resolve_start_weights(cfg)
    if cfg.model.pretrained != "none":
        create_model(cfg.model)


def check_batches_cover_ranks(cfg: Config, world_size: int) -> None:
    """Each rank trains on its share of every global batch (`data.samplers.rank_share`: shares differ by
    at most one sample, so nothing has to divide by the number of ranks), but every rank needs at
    least one sample per modality: the global batch must hold as many samples as there are ranks."""
    if world_size <= 1:
        return
    sizes = (("cmc.batch_size", cfg.cmc.batch_size, "cmc" in cfg.stages),
             ("sca.num_ids × sca.num_instances", cfg.sca.num_ids * cfg.sca.num_instances, "sca" in cfg.stages))
    wrong = [f"{key} = {value}" for key, value, used in sizes if used and value < world_size]
    if wrong:
        raise ConfigError(f"{' and '.join(wrong)} samples per batch cannot feed the {world_size} processes torchrun "
                          "started (each trains on its share of every batch, at least one sample); use fewer "
                          "processes or a larger batch")


def report_plan(run: RunFolder, plan: Plan, resume: bool) -> dict | None:
    """Log where the run starts; damaged newer checkpoints are reported and set aside as `*.damaged`.
    Returns the checkpoint to resume from (None: from the beginning)."""
    for path, problem in plan.damaged:
        run.log(f"WARNING: {problem}; resuming from {Path(plan.state['path']).name} instead "
                f"(the damaged file is kept as {path.name}.damaged)", level=logging.WARNING)
        if is_main():
            os.replace(path, path.with_name(path.name + ".damaged"))
    if plan.state is not None:
        run.log(resume_line(plan.state, run.path))
    elif resume:
        run.log(f"WARNING: {run.path} holds no checkpoint yet; the run starts from the beginning",
                level=logging.WARNING)
    return plan.state


def resume_line(state: dict, run_dir: Path) -> str:
    """What resuming from checkpoint `state` does, in words: a finished run (final_metrics.json) is
    only evaluated again; a stage without epochs (MMLM) is not said to have any."""
    name = Path(state["path"]).name
    results = Path(run_dir) / "final_metrics.json"
    if results.is_file():
        return (f"{run_dir} holds a finished run: --resume evaluates its final model ({name}) again and "
                f"rewrites {results}")
    if state["stage"] == "done":  # trained, but killed before final_metrics.json was written
        return f"the run's training had finished ({name}): evaluating its final model and writing {results}"
    if state["epoch"] < 0:  # a checkpoint written between two stages (cmc.pt)
        return f"resuming at the start of the {state['stage'].upper()} stage ({name})"
    return f"resuming after {state['stage'].upper()} epoch {state['epoch'] + 1} ({name})"
