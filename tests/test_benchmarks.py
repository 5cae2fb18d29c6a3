"""benchmarks/sysu_scale.py at its tiny scale: every stage is timed and the projection of the sysu
schedule adds up, with the counts of the preset's epochs, evaluations and checkpoints."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from script_helpers import script_env
from vireid.config import load_config

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TIMED = ("timed training step", "timed input pipeline", "timed cmc phase 1 epoch", "timed cmc phase 2 epoch",
         "timed mmlm", "timed sca epoch", "timed evaluation", "timed checkpoint")
ITEM = re.compile(r"^\s+(.+?)\s+(\d+) x\s+([\d.]+) s =\s+([\d.]+) s$")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sysu_scale")
    env = script_env(cache=tmp / "cache", threads=2)
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "sysu_scale.py"), "--tiny", "--device", "cpu",
                           "--data", str(tmp / "data"), "--json", str(tmp / "result.json")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.splitlines(), json.loads((tmp / "result.json").read_text())


def test_every_stage_is_timed(tiny_run):
    lines, _ = tiny_run
    for prefix in TIMED:
        found = [line for line in lines if line.startswith(prefix)]
        assert len(found) == 1, f"expected one line starting with {prefix!r}"
        measured = [float(x) for x in re.findall(r"([\d.]+) (?:s|ms|images/s)\b", found[0])]
        assert measured and max(measured) > 0, found[0]


def test_train_set_has_the_sizes_the_generator_was_asked_for(tiny_run):
    lines, result = tiny_run
    shape = result["shape"]
    line = next(line for line in lines if line.startswith("train set:"))
    assert f"{shape['train_visible']} visible + {shape['train_infrared']} infrared images of 6 ids" in line


def test_projection_adds_up_over_the_sysu_schedule(tiny_run):
    lines, result = tiny_run
    start = next(i for i, line in enumerate(lines) if line.startswith("projection of the sysu schedule"))
    items = {}
    for line in lines[start + 1:]:
        match = ITEM.match(line)
        if not match:
            break
        name, count, each, product = match.group(1), int(match.group(2)), float(match.group(3)), float(match.group(4))
        assert product == pytest.approx(count * each, abs=0.05 + 0.005 * count)  # each is printed to 0.01 s
        items[name] = (count, product)
    total = float(re.match(r"projected total: (\d+) s", lines[start + 1 + len(items)]).group(1))
    assert total == pytest.approx(sum(p for _, p in items.values()), abs=1 + 1e-3 * total)
    assert result["projection"]["total_s"] == pytest.approx(total, abs=1)

    cfg = load_config("sysu")  # the tiny run keeps the preset's schedule
    cmc_epochs, sca_epochs, every = cfg.cmc.phase1_epochs + cfg.cmc.phase2_epochs, cfg.sca.epochs, cfg.eval.every
    evaluations = (cmc_epochs - 1) // every + 1 + (sca_epochs - 1) // every + 1  # periodic ones + one per stage
    counts = {name: count for name, (count, _) in items.items()}
    assert counts == {"CMC phase 1 epoch": cfg.cmc.phase1_epochs, "CMC phase 2 epoch": cfg.cmc.phase2_epochs,
                      "MMLM": 1, "SCA warm-up epoch": cfg.sca.warmup_epochs,
                      "SCA epoch": sca_epochs - cfg.sca.warmup_epochs,
                      f"evaluation (eval.every {every})": evaluations,
                      "checkpoint": cmc_epochs + sca_epochs + 2}
