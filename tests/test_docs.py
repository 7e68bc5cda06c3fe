"""The derivation, the code and the errata cite each other, and none of the citations dangle."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import reference
from reference import finite_differences
from softmax_grad.cases import FUNCTIONS
from tests import test_errata
from tests.conftest import VARIANTS

DOCS = Path(__file__).resolve().parent.parent / "docs"
CITATION = re.compile(r"eqs?\.\s*((?:\(?\d+\)?(?:\s*(?:,|-|and)\s*)?)+)", re.IGNORECASE)

PUBLIC = {f"{name}.{f}": getattr(module, f) for name, module in VARIANTS.items() for f in FUNCTIONS}
PUBLIC |= {f"reference.{f}": getattr(reference, f) for f in FUNCTIONS}
PUBLIC |= {f"reference.finite_differences.{f}": getattr(finite_differences, f) for f in FUNCTIONS}
PUBLIC |= {
    "reference.finite_differences.central_difference": finite_differences.central_difference,
    "reference.finite_differences.directional_derivative": finite_differences.directional_derivative,
}


def cited(text: str) -> set[int]:
    """Equation numbers a text cites: 'eq. (5)', 'eqs. 2, 5, 15', 'eqs. (8)-(11)'.

    >>> sorted(cited("see eqs. (8)-(11) and eq. 14"))
    [8, 9, 10, 11, 14]
    """
    numbers: set[int] = set()
    for match in CITATION.finditer(text):
        for part in re.split(r"\s*(?:,|and)\s*", match.group(1)):
            bounds = [int(n) for n in re.findall(r"\d+", part)]
            if len(bounds) == 2 and "-" in part:
                numbers |= set(range(bounds[0], bounds[1] + 1))
            else:
                numbers |= set(bounds)
    return numbers


def equations() -> set[int]:
    return {int(n) for n in re.findall(r"\\tag\{(\d+)\}", (DOCS / "derivation.md").read_text())}


def test_the_derivation_numbers_at_least_the_thirteen_equations_of_the_design():
    assert set(range(1, 14)) <= equations()


def test_every_public_function_cites_an_equation_of_the_derivation():
    known = equations()
    for name, function in PUBLIC.items():
        numbers = cited(inspect.getdoc(function) or "")
        assert numbers, f"{name} cites no equation"
        assert numbers <= known, f"{name} cites {sorted(numbers - known)}, which docs/derivation.md lacks"


def test_every_equation_is_cited_by_code_that_implements_it():
    citing: set[int] = set()
    for function in PUBLIC.values():
        citing |= cited(inspect.getdoc(function) or "")
    missing = equations() - citing
    assert not missing, f"equations {sorted(missing)} are cited by no public docstring"


def test_every_erratum_names_a_test_that_exists():
    text = (DOCS / "errata.md").read_text()
    rows = [line for line in text.splitlines() if re.match(r"\| E\d+ \|", line)]
    assert len(rows) >= 10
    for row in rows:
        names = re.findall(r"`(test_E\d+_\w+)`", row)
        assert names, f"erratum without a pinning test: {row[:60]}"
        for name in names:
            assert hasattr(test_errata, name), f"{name} is named in errata.md but not in tests/test_errata.py"
