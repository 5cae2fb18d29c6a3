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
    check_divisible_by_ranks(cfg, world_size)
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


def check_divisible_by_ranks(cfg: Config, world_size: int) -> None:
    """Each rank trains on an equal slice of every global batch: the batch sizes must divide by the
    number of ranks, or identities would be dropped from every batch."""
    if world_size <= 1:
        return
    wrong = [f"{key}={value}" for key, value, used in
             (("cmc.batch_size", cfg.cmc.batch_size, "cmc" in cfg.stages),
              ("sca.num_ids", cfg.sca.num_ids, "sca" in cfg.stages)) if used and value % world_size]
    if wrong:
        raise ConfigError(f"{' and '.join(wrong)} must be a multiple of the {world_size} processes torchrun "
                          "started (each takes an equal slice of every batch); change the setting or the "
                          "process count")


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
