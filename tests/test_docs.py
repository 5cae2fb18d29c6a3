"""docs/method.md stays true to the code: every config key is documented with its real default, the
preset and profile tables equal the preset files and `REFERENCE_PROFILE`, and every "§N.M" citation
(in the page itself and in the docs, README and sources citing it) names a section that exists.

The expected values come from the dataclass defaults, the preset YAML files read with plain PyYAML,
and `REFERENCE_PROFILE`; the page is parsed as Markdown text, never generated from them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from vireid.config import REFERENCE_PROFILE, Config, valid_keys

ROOT = Path(__file__).resolve().parents[1]
METHOD = ROOT / "docs" / "method.md"
PRESETS = ROOT / "src" / "vireid" / "configs"
UNSET = "·"  # a preset-table cell for a key the preset does not set

_HEADING = re.compile(r"^#{2,4}\s+(\d+(?:\.\d+)*)\.?\s", re.MULTILINE)
_CITATION = re.compile(r"§\s*(\d+(?:\.\d+)*)")


def _text() -> str:
    return METHOD.read_text(encoding="utf-8")


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Every Markdown table as (header cells, body rows of cells)."""
    tables, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and re.fullmatch(r"\|[-|: ]+\|", lines[i + 1].strip()):
            header, rows, i = _cells(lines[i]), [], i + 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            tables.append((header, rows))
        else:
            i += 1
    return tables


def _keyed_rows(columns: tuple[str, ...]) -> dict[str, list[str]]:
    """Rows keyed by their `section.key`, of all tables whose header starts with `columns` and has one
    more column (the meaning or the reason)."""
    rows: dict[str, list[str]] = {}
    for header, body in _tables(_text()):
        if len(header) != len(columns) + 1 or tuple(h.lower() for h in header[:-1]) != columns:
            continue
        for row in body:
            key = row[0].strip("`")
            assert key not in rows, f"docs/method.md: {key} has two rows in the {'|'.join(columns)} tables"
            rows[key] = row
    return rows


def _same(cell: str, expected: Any) -> bool:
    """Does a table cell (`3.5e-4`, `true`, `[20, 40]`, `""`, `resnet50`) state `expected`?"""
    parsed = yaml.safe_load(cell.strip("`")) if cell.strip("`") else ""
    if isinstance(expected, bool):
        return parsed is expected
    if isinstance(expected, float):
        try:
            return float(parsed) == pytest.approx(expected, rel=1e-12)  # YAML 1.1 reads 1e-4 as a string
        except (TypeError, ValueError):
            return False
    if isinstance(expected, int):
        return isinstance(parsed, int) and not isinstance(parsed, bool) and parsed == expected
    if isinstance(expected, list):
        return isinstance(parsed, list) and len(parsed) == len(expected) and all(
            _same(str(p), e) for p, e in zip(parsed, expected))
    return str(parsed if parsed is not None else "") == str(expected)


def _default(key: str) -> Any:
    target: Any = Config()
    for part in key.split("."):
        target = getattr(target, part)
    return target


def _flat_preset(name: str) -> dict[str, Any]:
    tree = yaml.safe_load((PRESETS / f"{name}.yaml").read_text(encoding="utf-8")) or {}
    flat = {}
    for name_, value in tree.items():
        if isinstance(value, dict):
            flat.update({f"{name_}.{sub}": v for sub, v in value.items()})
        else:
            flat[name_] = value
    return flat


def _sections(text: str) -> set[str]:
    return set(_HEADING.findall(text))


def test_every_config_key_has_a_row_with_its_real_default():
    rows = _keyed_rows(("key", "default"))
    keys = valid_keys()
    missing = [k for k in keys if k not in rows]
    assert not missing, f"docs/method.md documents no default for {missing} (add a `key | default` row)"
    unknown = [k for k in rows if k not in keys]
    assert not unknown, f"docs/method.md documents keys the config does not have: {unknown}"
    wrong = {k: (rows[k][1], _default(k)) for k in keys if not _same(rows[k][1], _default(k))}
    assert not wrong, f"docs/method.md states wrong defaults (doc, code): {wrong}"


def test_preset_table_equals_the_preset_files():
    header, body = next((h, b) for h, b in _tables(_text()) if h[:2] == ["key", "default"] and len(h) > 3)
    presets = header[2:]
    assert sorted(presets) == sorted(p.stem for p in PRESETS.glob("*.yaml")), "one column per packaged preset"
    table = {row[0].strip("`"): dict(zip(presets, row[2:])) for row in body}
    wrong = [row[0] for row in body if not _same(row[1], _default(row[0].strip("`")))]
    assert not wrong, f"docs/method.md: wrong defaults in the preset table for {wrong}"
    for preset in presets:
        settings = _flat_preset(preset)
        absent = [k for k in settings if k not in table]
        assert not absent, f"preset {preset} sets {absent}, which the preset table of docs/method.md lacks"
        for key, cells in table.items():
            cell = cells[preset]
            if key in settings:
                assert _same(cell, settings[key]), f"docs/method.md: {key} in preset {preset} is {settings[key]!r}, not {cell}"
            else:
                assert cell == UNSET, f"docs/method.md: preset {preset} does not set {key}; its cell should be {UNSET}"


def test_profile_table_equals_reference_profile():
    rows = _keyed_rows(("key", "paper", "reference"))
    assert sorted(rows) == sorted(REFERENCE_PROFILE), "the profile table lists exactly the keys of REFERENCE_PROFILE"
    for key, row in rows.items():
        assert _same(row[1], _default(key)), f"docs/method.md: paper value of {key} is {_default(key)!r}, not {row[1]}"
        reference = REFERENCE_PROFILE[key]
        if callable(reference):  # follows another key, e.g. sca.inter_start = sca.warmup_epochs
            cfg = Config()
            assert re.search(r"`[a-z_]+\.[a-z_]+`", row[2]), f"docs/method.md: name the key {key} follows"
            followed = row[2].split("`")[1]
            section, name = followed.split(".")
            setattr(getattr(cfg, section), name, 7)
            assert reference(cfg) == 7, f"docs/method.md: {key} under the reference profile does not follow {followed}"
        else:
            assert _same(row[2], reference), f"docs/method.md: reference value of {key} is {reference!r}, not {row[2]}"


def test_method_page_cites_only_its_own_sections():
    text = _text()
    sections = _sections(text)
    assert {"1", "2", "3", "4", "5", "6", "6.1", "6.2", "6.3", "7", "8"} <= sections, sorted(sections)
    dangling = sorted({s for s in _CITATION.findall(text) if s not in sections})
    assert not dangling, f"docs/method.md cites sections it does not have: {dangling}"


def test_citations_of_method_page_elsewhere_exist():
    sections = _sections(_text())
    files = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "src").rglob("*.py")]
    dangling = []
    for path in files:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            at = line.find("method.md")
            if at < 0 or path == METHOD:
                continue
            dangling += [f"{path.relative_to(ROOT)}:{number} §{s}" for s in _CITATION.findall(line[at:])
                         if s not in sections]
    assert not dangling, f"citations of docs/method.md sections that do not exist: {dangling}"


def test_docs_cite_the_shipped_page_not_the_unshipped_spec():
    package = ROOT / "src" / "vireid"
    files = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *package.rglob("*.py"), *package.rglob("*.yaml")]
    stale = [f"{p.relative_to(ROOT)}:{n}" for p in files
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
             if re.search(r"METHOD(\.md| *§)|DESIGN(\.md|\b)", line)]
    assert not stale, f"cite docs/method.md instead of METHOD: {stale}"
