"""Everything a run needs, checked before its folder exists: a run that cannot start leaves nothing.

`vireid train` used to create the run folder first and then meet a missing dataset, unreadable
start weights or an unwritable cache; the folder then held a "run" that the same command refused
to reuse. `preflight` reads the dataset, the output and cache folders, the checkpoint to resume
from and the start weights, in that order (cheapest first), and creates nothing.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from vireid.config import Config, resolve_cache_dir, validate
from vireid.data.registry import DatasetReader, open_dataset
from vireid.engine.checkpoint import latest_readable_checkpoint
from vireid.engine.distributed import is_main
from vireid.engine.reuse import check_reuse
from vireid.engine.run import RunFolder
from vireid.engine.start_weights import resolve_start_weights
from vireid.errors import CheckpointError, ConfigError
from vireid.fileio import check_writable_folder
from vireid.models.factory import create_model


@dataclass
class Plan:
    """What preflight found: the dataset, the checkpoint to resume from (None: start from scratch),
    and the newer checkpoints that could not be read (path, problem), to be reported in the run."""

    dataset: DatasetReader
    state: dict | None = None
    damaged: list[tuple[Path, str]] = field(default_factory=list)


def preflight(cfg: Config, resume: bool, world_size: int = 1) -> Plan:
    """Check the run's inputs and outputs; a VireidError names the first problem. Creates nothing
    (the start-weight providers of `model.pretrained`, e.g. the demo's, may fill their cache)."""
    validate(cfg)
    check_batches_cover_ranks(cfg, world_size)
    output = Path(cfg.output)
    check_writable_folder(output, "--output (setting 'output')")
    continuing = check_reuse(output, cfg, resume)
    dataset = open_dataset(cfg.data.dataset, cfg.data.root, trial=cfg.data.trial)
    check_writable_folder(resolve_cache_dir(cfg), "the image cache folder (data.cache_dir, else $VIREID_CACHE_DIR)")
    plan = Plan(dataset)
    if continuing:
        plan.state, plan.damaged = latest_readable_checkpoint(output)
        if plan.state is not None:
            check_architecture(plan.state, cfg)
    if plan.state is None or plan.state.get("stage") != "done":
        check_start_weights(cfg)
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
        run.log(f"resuming after {plan.state['stage']} epoch {plan.state['epoch'] + 1} "
                f"({Path(plan.state['path']).name})")
    elif resume:
        run.log(f"WARNING: {run.path} holds no checkpoint yet; the run starts from the beginning",
                level=logging.WARNING)
    return plan.state
