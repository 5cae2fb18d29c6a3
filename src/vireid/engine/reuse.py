"""When a run folder may be (re)used: the rules `vireid train` applies before it writes anything.

A folder whose run saved a checkpoint (a finished epoch) or final metrics holds a run: it is continued
only with `--resume` and the same settings. A missing or empty folder, or one whose earlier attempt
never saved a checkpoint, takes a new run, so a failed start never blocks the command that fixes it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from vireid.config import STAGES, Config, config_to_dict, flatten_config
from vireid.errors import VireidError

# Settings that may change between a run and its resumption without making it a different run.
RESUME_FREE_KEYS = ("device", "output", "data.root", "data.cache_dir", "data.workers", "data.eval_batch_size",
                    "model.compile")
# What a run writes besides log.txt and config.yaml; cleared when a run that never saved a checkpoint
# is started again in its folder, so its curves and files do not mix with the new attempt's.
UNFINISHED_ARTEFACTS = ("metrics.jsonl", "final_metrics.json", "tb", "plots", "pseudo_labels", "mmlm")
# The file a live writer holds locked (vireid.engine.runlock); it never counts as a folder's content.
RUN_LOCK = ".vireid-run.lock"


class RunFolderError(VireidError):
    """The output folder holds another run, or its files cannot be written."""


def holds_run(path: str | Path) -> bool:
    """Whether a folder holds a run worth keeping: a checkpoint (a finished epoch) or final metrics."""
    path = Path(path)
    return (path / "final_metrics.json").is_file() or any((path / "checkpoints").glob("*.pt"))


def check_reuse(path: str | Path, config: Config | None, resume: bool, created: bool = False) -> bool:
    """Whether `path` may hold this run, and whether there is a run to continue there (True) or the
    run starts from scratch (False); RunFolderError otherwise. Reads only; creates nothing.

    A missing or empty folder, or one whose run never saved a checkpoint, starts from scratch (with
    `resume` only when it holds a vireid config.yaml, so a mistyped folder is not silently a new
    run). A folder holding a run is continued only with `resume` and the same config (up to
    RESUME_FREE_KEYS). `created`: the folder did not exist before this process locked it.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunFolderError(f"output {path} exists and is not a folder (setting 'output'); choose another --output")
    has_config = (path / "config.yaml").is_file()
    if not holds_run(path):
        if resume and not has_config:
            what = ("does not exist" if created or not path.exists()
                    else "holds no vireid run (no config.yaml, no checkpoint)")
            raise RunFolderError(f"cannot resume: {path} {what}; check --output, or leave out --resume to start "
                                 "a new run there")
        if not resume and not has_config and path.exists() and any(p.name != RUN_LOCK for p in path.iterdir()):
            raise RunFolderError(f"output folder {path} holds other files, not a vireid run; choose another "
                                 "--output or an empty folder")
        return False
    if not resume and (path / "final_metrics.json").is_file():
        raise RunFolderError(f"output folder {path} holds a finished run (results in {path / 'final_metrics.json'}); "
                             "choose another --output for a new run, or add --resume to evaluate its final model "
                             "again")
    if not resume:
        raise RunFolderError(
            f"output folder {path} already holds a run; use --resume to continue it "
            "or choose another --output"
        )
    if config is None or not has_config:
        return True
    try:
        old = flatten_config(yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8")) or {})
    except (OSError, yaml.YAMLError) as err:
        raise RunFolderError(f"cannot resume {path}: its config.yaml cannot be read ({err})") from None
    changed = changed_settings(old, config)
    if changed:
        detail = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in list(changed.items())[:8])
        raise RunFolderError(
            f"cannot resume {path}: its config.yaml describes a different run ({detail}); "
            "resume with the same settings or choose another --output"
        )
    return True


def changed_settings(saved: dict, config: Config) -> dict[str, tuple]:
    """{key: (saved value, new value)} for every setting outside RESUME_FREE_KEYS in which a run's
    flattened config.yaml (`saved`) and `config` differ, sorted by key: what makes them two runs.
    The section of a stage neither of them runs never acts (a CMC-only run's `sca.lr`), so it is
    not compared; the stage lists themselves are. A setting `saved` lacks (its run predates the
    setting) counts as unchanged while it keeps its built-in default, which is how every new
    setting keeps the earlier behaviour."""
    new = flatten_config(config_to_dict(config))
    defaults = flatten_config(config_to_dict(Config()))
    idle = {f"{stage}." for stage in STAGES if stage not in config.stages and stage not in saved.get("stages", [])}
    keys = sorted(k for k in set(saved) | set(new) if k not in RESUME_FREE_KEYS and saved.get(k) != new.get(k)
                  and not any(k.startswith(prefix) for prefix in idle)
                  and not (k not in saved and k in defaults and new.get(k) == defaults[k]))
    return {k: (saved.get(k), new.get(k)) for k in keys}


def clear_unfinished(path: Path) -> None:
    """Remove what an attempt that never saved a checkpoint wrote (log.txt keeps its story)."""
    for name in UNFINISHED_ARTEFACTS:
        target = path / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target, ignore_errors=True)
        elif target.exists() or target.is_symlink():
            target.unlink(missing_ok=True)
