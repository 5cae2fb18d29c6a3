"""The configuration tree: every hyper-parameter with the paper's default (docs/method.md §5-§7).

Values are resolved in this order, later wins:

1. the dataclass defaults below (the paper's text, profile ``paper``);
2. the profile's defaults (``profile: reference`` reproduces the released code, docs/method.md §6);
3. a packaged preset (``vireid/configs/<name>.yaml``);
4. a user YAML file;
5. command-line overrides ``section.key=value`` (or ``key=value`` for top-level keys).

A profile only changes keys that steps 3-5 leave unset, so explicit settings always win.
"""

from __future__ import annotations

import dataclasses
import math
import difflib
import os
import re
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import yaml

from vireid.data.registry import dataset_names
from vireid.errors import ConfigError
from vireid.fileio import atomic_write


@dataclass
class DataConfig:
    """Which dataset, where it lives, and how images are sized and cached."""

    dataset: str = "sysu"  # a registered dataset: sysu | regdb | llcm (vireid.data.registry.READERS)
    root: str = ""  # dataset root folder (the raw layout of docs/method.md §2)
    trial: int = 1  # RegDB train/test split 1..10
    height: int = 288
    width: int = 144
    # Decoded-image cache folder. "" = $VIREID_CACHE_DIR if set, else $XDG_CACHE_HOME/vireid,
    # else ~/.cache/vireid (see `resolve_cache_dir`). Caches are keyed by content, so sharing is safe.
    cache_dir: str = ""
    workers: int = 0  # processes that augment training batches ahead (0: the main process); same results for any value
    eval_batch_size: int = 128  # batch size for feature extraction
    # false: the training views leave out ChannelExchange and ChannelAdapGray (an ablation of what
    # creates cross-modal signal); the SCA confidence pass keeps its channel-exchanged view
    channel_augment: bool = True


@dataclass
class ModelConfig:
    """The two-stream AGW ResNet (docs/method.md §3) and how it runs."""

    arch: str = "resnet50"  # resnet50 | resnet18
    pretrained: str = "imagenet"  # imagenet | synthetic | none
    weights_path: str = ""  # local weights instead of a download ("synthetic" needs one)
    nonlocal_blocks: bool = True
    nonlocal_channels: str = "reference"  # reference (C'=1) | half (C'=C/2)
    last_stride: int = 1
    gem_p: float = 3.0
    channels_last: bool = True  # CUDA only
    amp: bool = True  # CUDA only
    sync_bn: bool = True  # DDP only: BatchNorm statistics over the global batch, as in one process
    compile: bool = False  # torch.compile the training model in place (first steps compile; see docs/scaling.md)


@dataclass
class ClusterConfig:
    """Pseudo-labels: k-reciprocal Jaccard distance + DBSCAN (docs/method.md §5)."""

    k1: int = 30
    k2: int = 6
    eps: float = 0.6
    # one clustering's own DBSCAN radius; 0 = `eps` (the paper uses one eps for all three clusterings)
    eps_visible: float = 0.0
    eps_infrared: float = 0.0
    eps_mixed: float = 0.0
    min_samples: int = 4
    mixed_k1: int = 40  # k1 for the mixed visible+infrared set (CMC phase 2)
    mixed_k2: int = 32
    renormalize: bool = True  # re-normalise the flip-averaged features (reference: False)
    flip_average: bool = True
    knn_block: int = 4096  # query rows per block in the exact kNN search


@dataclass
class CMCConfig:
    """Cluster-contrast stage, two phases (docs/method.md §6.1)."""

    phase1_epochs: int = 50
    phase2_epochs: int = 50
    iterations: int = 200  # per epoch (SYSU 200, RegDB 100)
    batch_size: int = 128
    num_instances: int = 16
    lr: float = 3.5e-4
    weight_decay: float = 5e-4
    step_size: int = 20
    gamma: float = 0.1
    temperature: float = 0.05
    memory_momentum: float = 0.1
    mixed_memory: str = "paper"  # paper (average of normalised centroids) | reference (of raw means)


@dataclass
class MMLMConfig:
    """Multi-memory learning and matching (docs/method.md §6.2)."""

    enabled: bool = True
    n_memories: int = 4
    cost_sum_over: str = "visible"  # visible (paper) | infrared (reference)
    assignment: str = "hungarian"  # hungarian (paper) | nearest (reference)
    kmeans_iterations: int = 50  # Lloyd iterations at most (reference: 300, scikit-learn's default)
    kmeans_restarts: int = 1  # k-means++ seedings per cluster, the lowest inertia kept (reference: 10)
    # Diagnosis only: >= 0 replaces the matching by pairs built from the TRUE identities with this pair
    # precision (studies/oracle_labels.py); -1 = off, the unsupervised method.
    oracle_precision: float = -1.0
    oracle_clusters: str = "cmc"  # per-modality clusters of the oracle: cmc (the CMC model's) | identity
    seed: int = 0


@dataclass
class SCAConfig:
    """Soft cluster-level alignment stage (docs/method.md §6.3)."""

    init: str = "pretrained"  # pretrained (fresh backbone) | cmc (start from the CMC model)
    epochs: int = 80
    warmup_epochs: int = 5
    num_ids: int = 8  # identities per batch (paper 8, reference 6)
    num_instances: int = 4
    lr: float = 0.1
    backbone_lr_mult: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    triplet_margin: float = 0.2
    intra: bool = True
    lambda_intra: float = 0.5
    intra_start: int = 5
    intra_distance: str = "l2sq_unit"  # l2sq_unit (paper, on unit vectors) | l2sq | mse | l1 (reference)
    intra_form: str = "paper"  # paper (mean over the batch) | reference (both sums over the visible count)
    prototype_init: str = "pass"  # pass (one weighted pass, paper) | zero (reference)
    inter: bool = True
    lambda_inter: float = 0.05
    inter_start: int = 15
    inter_form: str = "paper"  # paper | reference (≈2x the paper's gradient)
    confidence_bn: str = "eval"  # eval (paper) | train (reference)
    confidence_weights: str = "gmm"  # gmm (paper) | uniform (every labelled sample weighs 1: a diagnostic)
    classifier_init: str = "random"  # random (paper: N(0, 0.001)) | prototypes (class-mean directions)
    gmm_max_iter: int = 100
    gmm_tol: float = 1e-2
    gmm_reg_covar: float = 5e-4
    iterations: int = 0  # 0 = cover the visible samples once per epoch
    lr_warmup_epochs: int = 10
    lr_milestones: list[int] = field(default_factory=lambda: [20, 40])


@dataclass
class EvalConfig:
    """Evaluation protocol settings (docs/method.md §7)."""

    every: int = 10  # evaluate every N epochs (0 = only at the end)
    trials: int = 10
    max_rank: int = 20


@dataclass
class Config:
    """The whole run: top-level settings and one section per component."""

    seed: int = 0
    deterministic: bool = False
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    profile: str = "paper"  # paper | reference (docs/method.md §6)
    output: str = "runs/vireid"
    stages: list[str] = field(default_factory=lambda: ["cmc", "mmlm", "sca"])
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    cmc: CMCConfig = field(default_factory=CMCConfig)
    mmlm: MMLMConfig = field(default_factory=MMLMConfig)
    sca: SCAConfig = field(default_factory=SCAConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


# Allowed values of the choice fields, keyed by dotted name.
CHOICES: dict[str, tuple[str, ...]] = {
    "profile": ("paper", "reference"),
    "model.arch": ("resnet50", "resnet18"),
    "model.pretrained": ("imagenet", "synthetic", "none"),
    "model.nonlocal_channels": ("reference", "half"),
    "mmlm.cost_sum_over": ("visible", "infrared"),
    "mmlm.assignment": ("hungarian", "nearest"),
    "mmlm.oracle_clusters": ("cmc", "identity"),
    "cmc.mixed_memory": ("paper", "reference"),
    "sca.init": ("pretrained", "cmc"),
    "sca.intra_distance": ("l2sq_unit", "l2sq", "mse", "l1"),
    "sca.intra_form": ("paper", "reference"),
    "sca.prototype_init": ("pass", "zero"),
    "sca.inter_form": ("paper", "reference"),
    "sca.confidence_bn": ("eval", "train"),
    "sca.confidence_weights": ("gmm", "uniform"),
    "sca.classifier_init": ("random", "prototypes"),
}
STAGES = ("cmc", "mmlm", "sca")
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")

# What `profile: reference` changes (the released code's behaviour, docs/method.md §6). A callable is
# evaluated on the otherwise resolved config, so it follows explicit settings of what it reads.
REFERENCE_PROFILE: dict[str, Any | Callable[[Config], Any]] = {
    "cluster.renormalize": False,  # the flip average is not re-normalised (§5)
    "cmc.mixed_memory": "reference",  # raw per-modality means averaged, then normalised (§6.1)
    "mmlm.cost_sum_over": "infrared",  # cost sums over the infrared memories (§6.2)
    "mmlm.assignment": "nearest",  # each visible cluster takes its cheapest IR cluster (§6.2)
    "mmlm.kmeans_iterations": 300,  # scikit-learn KMeans' max_iter (§6.2)
    "mmlm.kmeans_restarts": 10,  # scikit-learn KMeans' n_init (§6.2)
    "sca.num_ids": 6,  # 6 identities per SCA batch (§6.3)
    "sca.intra_distance": "l1",  # mean absolute error to the prototype (§6.3)
    "sca.intra_form": "reference",  # visible and infrared sums both divided by the visible count (§6.3)
    "sca.prototype_init": "zero",  # prototypes start at zero, not one weighted pass (§6.3)
    "sca.inter_form": "reference",  # MMD summed over views and directions (§6.3)
    "sca.inter_start": lambda cfg: cfg.sca.warmup_epochs,  # right after warm-up (§6.3)
    "sca.confidence_bn": "train",  # per-sample CE computed with BN in train mode (§6.3)
    "sca.epochs": 100,  # 100 SCA epochs (§6.3)
}
PROFILES: dict[str, dict[str, Any]] = {"paper": {}, "reference": REFERENCE_PROFILE}


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def valid_keys() -> list[str]:
    """Every settable dotted key, e.g. ``seed``, ``cmc.lr``."""
    keys: list[str] = []
    for name, tp in _hints(Config).items():
        if dataclasses.is_dataclass(tp):
            keys.extend(f"{name}.{sub}" for sub in _hints(tp))
        else:
            keys.append(name)
    return keys


def _field_type(key: str) -> Any:
    """The declared type of a dotted key; ConfigError with a suggestion when it does not exist."""
    parts = key.split(".")
    hints = _hints(Config)
    tp: Any = None
    if len(parts) == 1 and parts[0] in hints and not dataclasses.is_dataclass(hints[parts[0]]):
        tp = hints[parts[0]]
    elif len(parts) == 2 and parts[0] in hints and dataclasses.is_dataclass(hints[parts[0]]):
        tp = _hints(hints[parts[0]]).get(parts[1])
    if tp is None:
        close = [k for k in valid_keys() if k.split(".")[-1] == parts[-1]][:1]  # wrong section
        close = close or difflib.get_close_matches(key, valid_keys(), n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown config key {key!r}{hint}")
    return tp


def _coerce(key: str, value: Any, tp: Any, source: str) -> Any:
    """Check `value` against the field type (ints are accepted for floats); return it typed."""
    where = f" (from {source})" if source else ""
    origin = typing.get_origin(tp)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key!r}{where}: got {value!r}, expected a list of {item_tp.__name__}")
        return [_coerce(key, v, item_tp, source) for v in value]
    ok = False
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
            value = float(value)  # PyYAML (YAML 1.1) reads `1e-4` as a string
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif tp is str:
        ok = isinstance(value, str)
        if not ok and isinstance(value, (int, float)) and not isinstance(value, bool):
            value, ok = str(value), True  # e.g. `device=0` is the string "0"
    if not ok:
        raise ConfigError(
            f"config key {key!r}{where}: got {value!r} ({type(value).__name__}), expected {tp.__name__}"
        )
    return value


def _flatten(tree: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Nested YAML mapping -> {dotted key: value}; unknown sections/keys raise ConfigError."""
    if not isinstance(tree, Mapping):
        raise ConfigError(f"{source}: expected a mapping of config sections, got {type(tree).__name__}")
    flat: dict[str, Any] = {}
    hints = _hints(Config)
    for name, value in tree.items():
        if name in hints and dataclasses.is_dataclass(hints[name]):
            if value is None:
                continue
            if not isinstance(value, Mapping):
                raise ConfigError(f"{source}: section {name!r} must be a mapping of keys, got {value!r}")
            for sub, v in value.items():
                flat[f"{name}.{sub}"] = v
        else:
            flat[str(name)] = value
    for key in flat:
        try:
            _field_type(key)
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None
    return flat


def parse_override(text: str) -> tuple[str, Any]:
    """``section.key=value`` -> (key, value) with the value read as YAML (``1e-4``, ``[20,40]``)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value (e.g. cmc.lr=1e-4)")
    key, raw = text.split("=", 1)
    key = key.strip().lstrip("-")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({err})") from None
    if value is None:
        value = raw.strip()
    return key, value


def _set(cfg: Config, key: str, value: Any, source: str = "") -> None:
    tp = _field_type(key)
    value = _coerce(key, value, tp, source)
    parts = key.split(".")
    target: Any = cfg if len(parts) == 1 else getattr(cfg, parts[0])
    setattr(target, parts[-1], value)


def _get(cfg: Config, key: str) -> Any:
    target: Any = cfg
    for part in key.split("."):
        target = getattr(target, part)
    return target


# Ranges of the numeric settings an optimiser, loss or sampler would reject only mid-run (or not at
# all, training nothing): (lowest, highest, whether the lowest itself is allowed).
RANGES: dict[str, tuple[float, float, bool]] = {
    "data.trial": (1, math.inf, True),
    "model.gem_p": (0.0, math.inf, False),
    "cmc.lr": (0.0, math.inf, False), "cmc.weight_decay": (0.0, math.inf, True),
    "cmc.step_size": (0, math.inf, False), "cmc.gamma": (0.0, math.inf, False),
    "cmc.temperature": (0.0, math.inf, False), "cmc.memory_momentum": (0.0, 1.0, True),
    "mmlm.kmeans_iterations": (0, math.inf, False),
    "sca.lr": (0.0, math.inf, False), "sca.backbone_lr_mult": (0.0, math.inf, True),
    "sca.momentum": (0.0, 1.0, True), "sca.weight_decay": (0.0, math.inf, True),
    "sca.triplet_margin": (0.0, math.inf, True), "sca.lambda_intra": (0.0, math.inf, True),
    "sca.lambda_inter": (0.0, math.inf, True), "sca.intra_start": (0, math.inf, True),
    "sca.inter_start": (0, math.inf, True), "sca.gmm_max_iter": (0, math.inf, False),
    "sca.gmm_tol": (0.0, math.inf, False), "sca.gmm_reg_covar": (0.0, math.inf, True),
    "sca.lr_warmup_epochs": (0, math.inf, True),
}


def _check_numbers(cfg: Config) -> None:
    """Every float setting finite, and the settings of RANGES inside their range."""
    for key in valid_keys():
        value = _get(cfg, key)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"config key {key!r}: got {value!r}, expected a finite number")
    for key, (low, high, low_ok) in RANGES.items():
        value = _get(cfg, key)
        if value < low or (value == low and not low_ok) or value > high:
            bound = f">= {low:g}" if low_ok else f"> {low:g}"
            if math.isfinite(high):
                bound += f" and <= {high:g}"
            raise ConfigError(f"config key {key!r}: got {value!r}, expected a number {bound}")
    bad = [m for m in cfg.sca.lr_milestones if m < 0]
    if bad:
        raise ConfigError(f"config key 'sca.lr_milestones': got {cfg.sca.lr_milestones!r}, expected epochs >= 0")


def validate(cfg: Config) -> Config:
    """Check choice fields and ranges; ConfigError names the key, the value and what is allowed."""
    datasets = dataset_names()
    if cfg.data.dataset not in datasets:
        raise ConfigError(f"config key 'data.dataset': got {cfg.data.dataset!r}, expected one of {'|'.join(datasets)}")
    for key, allowed in CHOICES.items():
        value = _get(cfg, key)
        if value not in allowed:
            raise ConfigError(f"config key {key!r}: got {value!r}, expected one of {'|'.join(allowed)}")
    bad = [s for s in cfg.stages if s not in STAGES]
    if bad or not cfg.stages:
        raise ConfigError(f"config key 'stages': got {cfg.stages!r}, expected a non-empty subset of {list(STAGES)}")
    if not (cfg.device in ("auto", "cpu", "cuda") or cfg.device.startswith("cuda:")):
        raise ConfigError(f"config key 'device': got {cfg.device!r}, expected auto|cpu|cuda|cuda:N")
    positive = ["data.height", "data.width", "data.eval_batch_size", "cluster.k1", "cluster.k2",
                "cluster.min_samples", "cluster.mixed_k1", "cluster.mixed_k2", "cluster.knn_block",
                "cmc.batch_size", "cmc.num_instances", "mmlm.n_memories", "mmlm.kmeans_iterations",
                "mmlm.kmeans_restarts", "sca.num_ids",
                "sca.num_instances", "eval.trials", "eval.max_rank"]
    non_negative = ["data.workers", "cmc.phase1_epochs", "cmc.phase2_epochs", "cmc.iterations",
                    "sca.epochs", "sca.warmup_epochs", "sca.iterations", "eval.every"]
    for key in positive:
        if _get(cfg, key) <= 0:
            raise ConfigError(f"config key {key!r}: got {_get(cfg, key)!r}, expected a positive number")
    for key in non_negative:
        if _get(cfg, key) < 0:
            raise ConfigError(f"config key {key!r}: got {_get(cfg, key)!r}, expected >= 0")
    _check_numbers(cfg)
    if cfg.mmlm.oracle_precision != -1.0 and not 0.0 <= cfg.mmlm.oracle_precision <= 1.0:
        raise ConfigError(f"config key 'mmlm.oracle_precision': got {cfg.mmlm.oracle_precision!r}, expected -1 "
                          "(off) or a pair precision in [0, 1]")
    for key in ("eps_visible", "eps_infrared", "eps_mixed"):
        if getattr(cfg.cluster, key) < 0:
            raise ConfigError(f"config key 'cluster.{key}': got {getattr(cfg.cluster, key)!r}, expected 0 (= cluster.eps) "
                              "or a positive radius")
    if not 0.0 < cfg.cluster.eps:
        raise ConfigError(f"config key 'cluster.eps': got {cfg.cluster.eps!r}, expected > 0")
    if cfg.cmc.batch_size % cfg.cmc.num_instances:
        raise ConfigError(f"config keys 'cmc.batch_size'={cfg.cmc.batch_size} and 'cmc.num_instances'="
                          f"{cfg.cmc.num_instances}: the batch size must be a multiple of num_instances")
    return cfg


def list_presets() -> list[str]:
    """Names of the packaged presets (``vireid/configs/*.yaml``)."""
    folder = resources.files("vireid") / "configs"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _read_yaml(text: str, source: str) -> dict[str, Any]:
    try:
        tree = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{source} is not valid YAML: {err}") from None
    return _flatten(tree or {}, source)


def _preset_settings(name: str) -> dict[str, Any]:
    resource = resources.files("vireid") / "configs" / f"{name}.yaml"
    if not resource.is_file():
        raise ConfigError(f"unknown preset {name!r}; expected one of {', '.join(list_presets())}")
    return _read_yaml(resource.read_text(encoding="utf-8"), f"preset {name!r}")


def _file_settings(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist (expected a YAML file of config sections)")
    return _read_yaml(path.read_text(encoding="utf-8"), f"config file {path}")


def load_config(
    preset: str | None = None, overrides: Sequence[str] = (), file: str | Path | None = None
) -> Config:
    """Resolve defaults -> profile -> preset -> file -> overrides into a validated Config."""
    layers: list[tuple[str, dict[str, Any]]] = []
    if preset:
        layers.append((f"preset {preset!r}", _preset_settings(preset)))
    if file is not None:
        layers.append((f"config file {file}", _file_settings(file)))
    for text in overrides:
        key, value = parse_override(text)
        layers.append((f"override {text!r}", {key: value}))
    explicit: dict[str, tuple[Any, str]] = {}
    for source, settings in layers:
        for key, value in settings.items():
            explicit[key] = (value, source)
    return _resolve(explicit)


def _resolve(explicit: Mapping[str, tuple[Any, str]]) -> Config:
    cfg = Config()
    if "profile" in explicit:
        _set(cfg, "profile", *explicit["profile"])
    profile = PROFILES.get(cfg.profile)
    if profile is None:
        raise ConfigError(f"config key 'profile': got {cfg.profile!r}, expected one of {'|'.join(PROFILES)}")
    for key, value in profile.items():
        if key not in explicit and not callable(value):
            _set(cfg, key, value, f"profile {cfg.profile}")
    for key, (value, source) in explicit.items():
        _set(cfg, key, value, source)
    for key, value in profile.items():
        if key not in explicit and callable(value):
            _set(cfg, key, value(cfg), f"profile {cfg.profile}")
    return validate(cfg)


def flatten_config(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config mapping (a config.yaml, `config_to_dict`) -> {"section.key": value}, unvalidated:
    the form in which two runs' settings are compared."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(flatten_config(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Plain nested dict (YAML/JSON/checkpoint friendly)."""
    return dataclasses.asdict(cfg)


def config_from_dict(tree: Mapping[str, Any]) -> Config:
    """Inverse of `config_to_dict`; the dict is taken as fully resolved (profile is not re-applied)."""
    cfg = Config()
    for key, value in _flatten(tree, "config dict").items():
        _set(cfg, key, value, "config dict")
    return validate(cfg)


def save_config(cfg: Config, path: str | Path) -> Path:
    """Write the resolved config as YAML (atomic: temp file + rename)."""
    return atomic_write(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


def resolve_cache_dir(cfg: Config) -> Path:
    """Where decoded images are cached: data.cache_dir, else $VIREID_CACHE_DIR, else ~/.cache/vireid."""
    if cfg.data.cache_dir:
        return Path(cfg.data.cache_dir).expanduser()
    if os.environ.get("VIREID_CACHE_DIR"):
        return Path(os.environ["VIREID_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "vireid"
