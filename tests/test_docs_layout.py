"""The documentation is split by reader and stays true to the repository:

- every page under docs/ is in the site's nav (mkdocs.yml), and the nav names no missing page;
- every user page starts with the task it serves and holds no dated measurement history;
- every experiment record (docs/experiments/) starts with its question, answer, command and date;
- the API reference has an entry for every name of `vireid.__all__`, under the name users import;
- the pages, scripts and files the docs, the README and the code name exist;
- every documented torchrun command passes the rank check as written (no override).

`mkdocs build --strict` (in CI) checks the links and that every API entry resolves; these tests
need no docs tools.
"""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

import pytest
import yaml

import vireid

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RECORDS = DOCS / "experiments"
USER_PAGES = sorted(DOCS.glob("*.md"))
RECORD_PAGES = sorted(p for p in RECORDS.glob("*.md") if p.name != "index.md")
ISO_DATE = re.compile(r"\b20\d\d-\d\d-\d\d\b")
# Pages the README announces before they are written, with the issue that writes them: drop an entry
# once its page exists (the test then checks it like any other).
ANNOUNCED: dict[str, str] = {}


def _nav_pages(node) -> list[str]:
    if isinstance(node, str):
        return [node] if node.endswith(".md") else []
    if isinstance(node, dict):
        return [page for value in node.values() for page in _nav_pages(value)]
    if isinstance(node, list):
        return [page for item in node for page in _nav_pages(item)]
    return []


def _first_paragraph(path: Path) -> str:
    """The first paragraph after the page's title, its lines joined."""
    body = path.read_text(encoding="utf-8").split("\n", 1)[1].strip()
    return " ".join(body.split("\n\n", 1)[0].split())


def test_every_page_is_in_the_site_nav_and_the_nav_has_no_missing_page():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    nav = _nav_pages(config["nav"])
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert sorted(nav) == pages, (sorted(set(pages) - set(nav)), sorted(set(nav) - set(pages)))
    assert config["theme"]["font"] is False  # the site builds offline: no web fonts


@pytest.mark.parametrize("page", USER_PAGES, ids=lambda p: p.name)
def test_a_user_page_starts_with_the_task_it_serves(page):
    assert page.read_text(encoding="utf-8").startswith("# ")
    assert _first_paragraph(page).startswith("Use this page to "), page.name


@pytest.mark.parametrize("page", USER_PAGES, ids=lambda p: p.name)
def test_a_user_page_holds_no_dated_measurements(page):
    # measurement history (what ran when, on which machine) belongs in docs/experiments/
    dated = [n for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1) if ISO_DATE.search(line)]
    assert not dated, f"docs/{page.name} lines {dated}: move dated measurements to docs/experiments/"


@pytest.mark.parametrize("page", RECORD_PAGES, ids=lambda p: p.name)
def test_an_experiment_record_starts_with_question_answer_command_and_date(page):
    text = page.read_text(encoding="utf-8")
    head = text.split("\n## ", 1)[0]
    labels = ["**Question.**", "**Answer.**", "**Command.**", "**Date.**"]
    at = [head.find(label) for label in labels]
    assert all(i >= 0 for i in at) and at == sorted(at), f"{page.name}: {dict(zip(labels, at))}"
    date = head[at[3]:].split("\n\n", 1)[0]
    assert re.search(r"\b20\d\d\b", date), f"{page.name}: the date paragraph names no year"
    assert f"experiments/{page.name}" in " ".join(_nav_pages(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]))
    assert f"({page.name})" in (RECORDS / "index.md").read_text(encoding="utf-8"), "list it in experiments/index.md"


def test_the_api_page_documents_every_public_name_under_its_import_name():
    text = (DOCS / "api.md").read_text(encoding="utf-8")
    entries = dict(re.findall(r"^::: (\S+)\n    options:\n      heading: \"([^\"]+)\"", text, re.MULTILINE))
    shown = {heading: target for target, heading in entries.items()}
    missing = [name for name in vireid.__all__ if f"vireid.{name}" not in shown]
    assert not missing, f"docs/api.md has no entry for {missing}"
    for name in vireid.__all__:
        module, attr = shown[f"vireid.{name}"].rsplit(".", 1)
        assert attr == name and getattr(importlib.import_module(module), attr) is getattr(vireid, name), name
    for target in entries:  # the entries beyond the top level resolve too
        module, attr = target.rsplit(".", 1)
        assert hasattr(importlib.import_module(module), attr), target


def _texts() -> list[Path]:
    """Where the docs, the README and the code name pages and scripts."""
    return [ROOT / "README.md", *DOCS.rglob("*.md"), *(ROOT / "src").rglob("*.py"), *(ROOT / "src").rglob("*.yaml"),
            *(ROOT / "studies").glob("*.py"), *(ROOT / "benchmarks").glob("*"), *(ROOT / "tests").glob("*.py")]


def test_named_scripts_exist():
    script = re.compile(r"\b(?:studies|benchmarks)/[A-Za-z0-9_]+\.(?:py|sh)\b")
    missing = sorted({f"{p.relative_to(ROOT)}: {m}" for p in _texts() for m in script.findall(p.read_text(encoding="utf-8"))
                      if not (ROOT / m).is_file()})
    assert not missing, missing


def test_named_doc_pages_exist():
    # experiment records quote commands as they were run (with output paths of their time): left out
    page = re.compile(r"\bdocs/[A-Za-z0-9_/.-]+\.md\b")
    texts = [p for p in _texts() if RECORDS not in p.parents]
    missing = sorted({f"{p.relative_to(ROOT)}: {m}" for p in texts for m in page.findall(p.read_text(encoding="utf-8"))
                      if not (ROOT / m).is_file() and m not in ANNOUNCED})
    assert not missing, missing


def _torchrun_commands() -> list[str]:
    from vireid.cli import TRAIN_EXAMPLES

    texts = [p.read_text(encoding="utf-8") for p in (ROOT / "README.md", *DOCS.rglob("*.md"))] + [TRAIN_EXAMPLES]
    commands = []
    for text in texts:
        joined = re.sub(r"\\\n\s*", " ", text)
        commands += [line.split("#")[0] for line in joined.splitlines() if "torchrun --nproc_per_node" in line
                     and "-m vireid train" in line and "..." not in line]
    return commands


def test_documented_torchrun_commands_pass_the_rank_check_as_written():
    from vireid.cli import _training_config, build_parser
    from vireid.engine.preflight import check_batches_cover_ranks

    commands = _torchrun_commands()
    assert commands
    for command in commands:
        words = shlex.split(command[command.index("torchrun"):])
        ranks = int(words[words.index("--nproc_per_node") + 1])
        args, extra = build_parser().parse_known_args(words[words.index("vireid") + 1:])
        args.overrides = list(args.overrides) + extra
        cfg = _training_config(args, default_preset=args.dataset)
        check_batches_cover_ranks(cfg, ranks)  # a ConfigError names the batch too small for the ranks
        assert "sca.num_ids" not in command  # the presets work as shipped: no override needed
