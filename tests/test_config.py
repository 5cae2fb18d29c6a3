"""Config tree: paper defaults, presets, profiles, precedence, overrides and their errors."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from vireid.config import (
    Config,
    config_from_dict,
    config_to_dict,
    list_presets,
    load_config,
    resolve_cache_dir,
    save_config,
)
from vireid.errors import ConfigError


def test_defaults_are_the_papers_values():
    cfg = load_config()
    # METHOD §5-§6, read off the text by hand
    assert (cfg.cluster.k1, cfg.cluster.k2, cfg.cluster.eps, cfg.cluster.min_samples) == (30, 6, 0.6, 4)
    assert (cfg.cluster.mixed_k1, cfg.cluster.mixed_k2) == (40, 32)
    assert (cfg.cmc.phase1_epochs, cfg.cmc.phase2_epochs, cfg.cmc.batch_size, cfg.cmc.num_instances) == (50, 50, 128, 16)
    assert (cfg.cmc.lr, cfg.cmc.temperature, cfg.cmc.memory_momentum) == (3.5e-4, 0.05, 0.1)
    assert (cfg.mmlm.n_memories, cfg.mmlm.cost_sum_over, cfg.mmlm.assignment) == (4, "visible", "hungarian")
    assert (cfg.sca.epochs, cfg.sca.num_ids, cfg.sca.lambda_intra, cfg.sca.lambda_inter) == (80, 8, 0.5, 0.05)
    assert (cfg.sca.inter_start, cfg.sca.intra_distance, cfg.sca.prototype_init) == (15, "l2sq_unit", "pass")
    assert cfg.sca.lr_milestones == [20, 40]
    assert (cfg.data.height, cfg.data.width) == (288, 144)
    assert cfg.stages == ["cmc", "mmlm", "sca"] and cfg.profile == "paper"


def test_every_packaged_preset_loads():
    assert {"sysu", "regdb", "llcm", "demo", "smoke"} <= set(list_presets())
    for name in list_presets():
        assert isinstance(load_config(name), Config)


def test_dataset_presets_carry_their_dataset_settings():
    regdb = load_config("regdb")
    assert (regdb.data.dataset, regdb.cluster.eps, regdb.cluster.mixed_k1, regdb.cluster.mixed_k2) == ("regdb", 0.3, 38, 18)
    assert regdb.cmc.iterations == 100
    sysu = load_config("sysu")
    assert (sysu.cluster.eps, sysu.cluster.mixed_k1, sysu.cluster.mixed_k2, sysu.cmc.iterations) == (0.6, 40, 32, 200)
    llcm = load_config("llcm")
    assert (llcm.data.dataset, llcm.data.height, llcm.data.width) == ("llcm", 384, 144)


def test_smoke_preset_is_tiny():
    cfg = load_config("smoke")
    assert (cfg.model.arch, cfg.model.pretrained, cfg.data.height, cfg.data.width) == ("resnet18", "none", 64, 32)
    assert (cfg.cmc.phase1_epochs, cfg.cmc.phase2_epochs, cfg.cmc.iterations, cfg.cmc.batch_size) == (1, 1, 2, 16)
    assert (cfg.sca.epochs, cfg.sca.warmup_epochs, cfg.eval.trials) == (2, 1, 1)


def test_overrides_are_read_as_yaml_and_typed():
    cfg = load_config(None, ["cmc.lr=1e-4", "mmlm.enabled=false", "sca.lr_milestones=[30, 60]",
                             "seed=7", "cluster.eps=1", "data.root=/data/SYSU MM01"])
    assert cfg.cmc.lr == pytest.approx(1e-4) and isinstance(cfg.cmc.lr, float)
    assert cfg.mmlm.enabled is False
    assert cfg.sca.lr_milestones == [30, 60]
    assert cfg.seed == 7
    assert cfg.cluster.eps == 1.0 and isinstance(cfg.cluster.eps, float)  # an int is a valid float
    assert cfg.data.root == "/data/SYSU MM01"


def test_wrong_type_names_key_value_and_expected_type():
    with pytest.raises(ConfigError, match=r"cmc\.batch_size.*'big'.*int"):
        load_config(None, ["cmc.batch_size=big"])
    with pytest.raises(ConfigError, match=r"cmc\.iterations.*2\.5.*int"):
        load_config(None, ["cmc.iterations=2.5"])
    with pytest.raises(ConfigError, match=r"mmlm\.enabled.*bool"):
        load_config(None, ["mmlm.enabled=1"])
    with pytest.raises(ConfigError, match=r"sca\.lr_milestones.*list"):
        load_config(None, ["sca.lr_milestones=20"])


def test_unknown_key_suggests_the_closest_valid_one():
    with pytest.raises(ConfigError, match=r"'cmc\.lrr'.*did you mean 'cmc\.lr'"):
        load_config(None, ["cmc.lrr=0.1"])
    with pytest.raises(ConfigError, match=r"'cmc\.eps'.*did you mean 'cluster\.eps'"):
        load_config(None, ["cmc.eps=0.5"])
    with pytest.raises(ConfigError, match=r"did you mean 'data\.root'"):
        load_config(None, ["dat.root=/x"])


def test_choice_fields_are_validated():
    with pytest.raises(ConfigError, match=r"model\.pretrained.*'imagenet1k'.*imagenet\|synthetic\|none"):
        load_config(None, ["model.pretrained=imagenet1k"])
    with pytest.raises(ConfigError, match="stages"):
        load_config(None, ["stages=[cmc, sac]"])
    with pytest.raises(ConfigError, match="profile"):
        load_config(None, ["profile=released"])


def test_override_without_equals_is_an_error():
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(None, ["cmc.lr"])


def test_reference_profile_sets_the_released_code_choices():
    cfg = load_config(None, ["profile=reference"])
    assert cfg.cluster.renormalize is False
    assert (cfg.mmlm.cost_sum_over, cfg.mmlm.assignment) == ("infrared", "nearest")
    assert (cfg.sca.num_ids, cfg.sca.intra_distance, cfg.sca.prototype_init) == (6, "l1", "zero")
    assert (cfg.sca.inter_form, cfg.sca.confidence_bn, cfg.sca.epochs) == ("reference", "train", 100)
    assert cfg.sca.inter_start == cfg.sca.warmup_epochs == 5


def test_explicit_settings_beat_the_profile(tmp_path):
    file = tmp_path / "mine.yaml"
    file.write_text("profile: reference\nsca:\n  num_ids: 10\n  warmup_epochs: 3\n")
    cfg = load_config("sysu", ["sca.epochs=7"], file=file)
    assert cfg.profile == "reference"
    assert (cfg.sca.num_ids, cfg.sca.epochs) == (10, 7)
    assert cfg.sca.inter_start == 3  # follows the explicit warm-up length
    assert cfg.mmlm.assignment == "nearest"  # untouched keys take the profile's value
    assert load_config(None, ["profile=reference", "sca.inter_start=9"]).sca.inter_start == 9


def test_precedence_preset_then_file_then_overrides(tmp_path):
    file = tmp_path / "mine.yaml"
    file.write_text("cluster:\n  eps: 0.45\n  k1: 25\ncmc:\n  lr: 1e-4\n")
    cfg = load_config("regdb", ["cluster.k1=21"], file=file)
    assert cfg.data.dataset == "regdb"  # preset
    assert cfg.cluster.eps == 0.45  # file beats preset (0.3)
    assert cfg.cmc.lr == pytest.approx(1e-4)  # YAML 1.1 reads 1e-4 as text; still a float here
    assert cfg.cluster.k1 == 21  # override beats file


def test_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("clusterr:\n  eps: 0.3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*did you mean 'cluster"):
        load_config(file=bad)
    with pytest.raises(ConfigError, match="missing.yaml"):
        load_config(file=tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="unknown preset 'sysy'"):
        load_config("sysy")


def test_save_then_load_round_trips(tmp_path):
    cfg = load_config("demo", ["seed=3", "profile=reference"])
    path = save_config(cfg, tmp_path / "config.yaml")
    tree = yaml.safe_load(path.read_text())
    assert tree["seed"] == 3 and tree["cluster"]["renormalize"] is False
    assert config_from_dict(tree) == cfg
    assert load_config(file=path) == cfg
    assert config_from_dict(config_to_dict(cfg)) == cfg
    assert dataclasses.asdict(cfg) == config_to_dict(cfg)


def test_cache_dir_defaults_to_user_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("VIREID_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_cache_dir(load_config()) == tmp_path / "xdg" / "vireid"
    monkeypatch.setenv("VIREID_CACHE_DIR", str(tmp_path / "env"))
    assert resolve_cache_dir(load_config()) == tmp_path / "env"
    assert resolve_cache_dir(load_config(None, [f"data.cache_dir={tmp_path / 'c'}"])) == tmp_path / "c"


def _attributes_read_outside_config() -> set[str]:
    import ast
    from pathlib import Path

    import vireid

    names = set()
    for path in Path(vireid.__file__).parent.rglob("*.py"):
        if path.name == "config.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute):
                names.add(node.attr)
    return names


def test_every_config_key_is_read_by_the_code():
    from vireid.config import valid_keys

    # `profile` is consumed while the config is resolved (it selects the profile's defaults)
    consumed_by_loading = {"profile"}
    read = _attributes_read_outside_config()
    unread = [k for k in valid_keys() if k not in consumed_by_loading and k.split(".")[-1] not in read]
    assert not unread, f"config keys nothing reads: {unread}"


def test_every_preset_sets_only_known_keys():
    from vireid.config import list_presets

    for name in list_presets():
        load_config(name)  # raises ConfigError naming the preset and the unknown key
