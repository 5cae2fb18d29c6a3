"""The version lives in one place (`vireid.__version__`): the package metadata, `vireid --version`,
CITATION.cff and CHANGELOG.md all say the same, and CITATION.cff is valid Citation File Format YAML."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import yaml

import vireid

ROOT = Path(__file__).resolve().parents[1]


def test_version_command_prints_the_package_metadata_version():
    done = subprocess.run([sys.executable, "-m", "vireid", "--version"], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == f"vireid {importlib.metadata.version('vireid')}"
    assert done.stdout.strip() == f"vireid {vireid.__version__}"


def test_pyproject_reads_the_version_from_the_package():
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    project = text.split("[project]", 1)[1].split("\n[", 1)[0]
    assert not re.search(r"^version\s*=", project, re.MULTILINE), "pyproject.toml states a second version"
    assert re.search(r'^dynamic\s*=\s*\[[^\]]*"version"', project, re.MULTILINE)
    assert re.search(r'^version\s*=\s*\{\s*attr\s*=\s*"vireid.__version__"\s*\}', text, re.MULTILINE)


def test_citation_file_parses_and_names_the_package_version():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert cff["cff-version"] == "1.2.0"
    assert str(cff["version"]) == vireid.__version__
    assert cff["title"] and cff["message"] and cff["authors"]
    paper = cff["references"][0]
    assert paper["title"] == "Multi-Memory Matching for Unsupervised Visible-Infrared Person Re-Identification"
    assert paper["year"] == 2024 and paper["authors"][0]["family-names"] == "Shi"


def test_changelog_has_a_section_for_the_package_version():
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "## [Unreleased]" in text
    assert re.search(rf"^## \[{re.escape(vireid.__version__)}\] - \d{{4}}-\d{{2}}-\d{{2}}$", text, re.MULTILINE)



def test_all_lists_exactly_the_lazy_public_names():
    assert sorted(vireid.__all__) == sorted(dir(vireid))
    for name in vireid.__all__:
        assert getattr(vireid, name) is not None, name
