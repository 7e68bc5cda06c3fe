"""One version everywhere it is written (README's BibTeX too), and a CITATION.cff with the fields CFF 1.2.0 requires.

The full schema check runs in CI (``cffconvert --validate`` in .ci/run); this
test keeps the facts in step without a YAML parser.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import softmax_grad

ROOT = Path(__file__).resolve().parent.parent


def test_version_is_the_same_in_pyproject_citation_changelog_and_package():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    citation = (ROOT / "CITATION.cff").read_text()
    assert re.search(rf"^version: {re.escape(version)}$", citation, re.MULTILINE)
    assert f"## {version} " in (ROOT / "CHANGELOG.md").read_text()
    assert softmax_grad.__version__ == version
    bibtex = re.search(r"^  version = \{([^}]*)\},$", (ROOT / "README.md").read_text(), re.MULTILINE)
    assert bibtex and bibtex.group(1) == version, "README's BibTeX block names another version"


def test_citation_has_the_required_and_asked_for_fields():
    citation = (ROOT / "CITATION.cff").read_text()
    for field in (
        "cff-version: 1.2.0",
        "message:",
        "title:",
        "authors:",
        "version:",
        "license:",
        "abstract:",
        "keywords:",
        "date-released:",
    ):
        assert re.search(rf"^{re.escape(field)}", citation, re.MULTILINE), field
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
