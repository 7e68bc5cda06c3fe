"""The derivation, the code and the errata cite each other, and none of the citations dangle."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from pathlib import Path

import reference
from reference import finite_differences
from softmax_grad import bounds
from softmax_grad.cases import FUNCTIONS
from tests import test_errata
from tests.conftest import VARIANTS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CITATION = re.compile(r"\beqs?\.\s*((?:\(?\d+\)?(?:\s*(?:,|-|and)\s*)?)+)", re.IGNORECASE)
# Where citations are written: the code's docstrings and comments, and the documents.
CITING_SOURCES = ("manual", "reference", "softmax_grad", "benchmarks")
CITING_DOCUMENTS = ("README.md", "docs/derivation.md", "docs/errata.md")
# Equations derived ahead of the code that implements them (issues 12 and 13). A group is
# excused from "cited by code" while no public docstring cites any of its equations; once
# one of them is cited, the whole group must be.
# Eq. (28), dX in one pass, is derived to explain why dW needs a second pass; no variant uses it.
AHEAD_OF_CODE = {
    "loss options": set(range(17, 25)),
    "linear cross-entropy": {25, 26, 27, 29},
    "dX in one pass": {28},
}
VOCABULARY_PARALLEL = set(range(45, 54))  # section 10, the vocabulary across devices (issue 22)

PUBLIC = {f"{name}.{f}": getattr(module, f) for name, module in VARIANTS.items() for f in FUNCTIONS}
PUBLIC |= {f"reference.{f}": getattr(reference, f) for f in FUNCTIONS}
PUBLIC |= {f"reference.finite_differences.{f}": getattr(finite_differences, f) for f in FUNCTIONS}
PUBLIC |= {
    f"softmax_grad.bounds.{f}": getattr(bounds, f)
    for f in ("product_error", "scores_bounds", "back_products", "two_layer_bounds", "ratio", "exceeds")
}
PUBLIC |= {"softmax_grad.bounds.Precision.gamma": bounds.Precision.gamma,
           "softmax_grad.bounds.Precision.worst_gamma": bounds.Precision.worst_gamma}  # fmt: skip
PUBLIC |= {
    "reference.finite_differences.central_difference": finite_differences.central_difference,
    "reference.finite_differences.directional_derivative": finite_differences.directional_derivative,
}


def citations(text: str) -> Iterator[tuple[int, set[int]]]:
    r"""Each citation of a text, as its line number and the equation numbers it cites.

    >>> list(citations("see eq. 14\nand eqs. (8),\n(11)"))
    [(1, {14}), (2, {8, 11})]
    """
    for match in CITATION.finditer(text):
        numbers: set[int] = set()
        for part in re.split(r"\s*(?:,|and)\s*", match.group(1)):
            bounds = [int(n) for n in re.findall(r"\d+", part)]
            if len(bounds) == 2 and "-" in part:
                numbers |= set(range(bounds[0], bounds[1] + 1))
            else:
                numbers |= set(bounds)
        yield text.count("\n", 0, match.start()) + 1, numbers


def cited(text: str) -> set[int]:
    """Equation numbers a text cites: 'eq. (5)', 'eqs. 2, 5, 15', 'eqs. (8)-(11)'.

    >>> sorted(cited("see eqs. (8)-(11) and eq. 14"))
    [8, 9, 10, 11, 14]
    """
    return set().union(*(numbers for _, numbers in citations(text)))


def dangling(texts: dict[str, str]) -> list[str]:
    """'file:line cites eq. N' for every citation of an equation that docs/derivation.md lacks."""
    known = equations()
    return [
        f"{name}:{line} cites eq. {n}"
        for name, text in texts.items()
        for line, numbers in citations(text)
        for n in sorted(numbers - known)
    ]


def tags() -> list[int]:
    """The equation numbers of docs/derivation.md, in the order they appear."""
    return [int(n) for n in re.findall(r"\\tag\{(\d+)\}", (DOCS / "derivation.md").read_text())]


def equations() -> set[int]:
    return set(tags())


# (30)-(31): the label entry without cancellation; (32)-(44): section 9's bounds; (45)-(53): section 10's;
# (54)-(56): section 11's, the VJP, the per-row losses and masked classes.
NUMBERED = set(range(1, 57))


def test_the_derivation_numbers_its_equations_once_each():
    numbers = tags()
    repeated = sorted({n for n in numbers if numbers.count(n) > 1})
    assert not repeated, f"docs/derivation.md tags {repeated} more than once"
    expected = NUMBERED
    missing, extra = sorted(expected - set(numbers)), sorted(set(numbers) - expected)
    assert not missing and not extra, f"missing {missing}, extra {extra}"


def test_the_vocabulary_across_devices_comes_in_its_own_section():
    text = (DOCS / "derivation.md").read_text()
    section = text.index("## 10. The vocabulary across devices")
    glance = text.index("## Equations and code at a glance")
    assert all(section < text.index(f"\\tag{{{n}}}") < glance for n in VOCABULARY_PARALLEL)


def test_the_loss_options_and_linear_cross_entropy_come_in_their_own_sections():
    text = (DOCS / "derivation.md").read_text()
    options, linear = text.index("## 7. Loss options"), text.index("## 8. Linear cross-entropy")
    glance = text.index("## Equations and code at a glance")
    where = {n: text.index(f"\\tag{{{n}}}") for n in range(17, 30)}
    assert all(options < where[n] < linear for n in range(17, 25)), "eqs. 17-24 belong to section 7"
    assert all(linear < where[n] < glance for n in range(25, 30)), "eqs. 25-29 belong to section 8"
    assert "Measured trade-off: see the benchmarks report" in text[linear:glance]


def test_the_table_at_a_glance_has_a_row_for_every_equation():
    text = (DOCS / "derivation.md").read_text()
    table = text[text.index("## Equations and code at a glance") :]
    rows = [int(n) for n in re.findall(r"^\| (\d+) \|", table, re.MULTILINE)]
    assert sorted(rows) == sorted(equations()), f"rows {rows} against equations {sorted(equations())}"


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
    ahead = set().union(*(group for group in AHEAD_OF_CODE.values() if not group & citing))
    missing = equations() - citing - ahead
    assert not missing, f"equations {sorted(missing)} are cited by no public docstring"


def citing_texts() -> dict[str, str]:
    texts = {name: (ROOT / name).read_text() for name in CITING_DOCUMENTS}
    for folder in CITING_SOURCES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            texts[str(path.relative_to(ROOT))] = path.read_text()
    return texts


def test_every_equation_cited_in_the_code_and_the_documents_exists():
    found = dangling(citing_texts())
    assert not found, "citations of equations that docs/derivation.md lacks:\n" + "\n".join(found)


def test_a_dangling_citation_is_found_with_its_line():
    text = "dS by eq. (6)\nthe cap's factor (eqs. 17,\n57)\nand eq. 12"
    assert dangling({"manual/x.py": text}) == ["manual/x.py:2 cites eq. 57"]


def test_relative_links_in_the_documents_resolve():
    broken = []
    for document in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", document.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (document.parent / target).exists():
                broken.append(f"{document.relative_to(ROOT)} links to {target}")
    assert not broken, "\n".join(broken)


def test_every_erratum_names_a_test_that_exists():
    text = (DOCS / "errata.md").read_text()
    rows = [line for line in text.splitlines() if re.match(r"\| E\d+ \|", line)]
    assert len(rows) >= 10
    for row in rows:
        names = re.findall(r"`(test_E\d+_\w+)`", row)
        assert names, f"erratum without a pinning test: {row[:60]}"
        for name in names:
            assert hasattr(test_errata, name), f"{name} is named in errata.md but not in tests/test_errata.py"


def test_no_docstring_or_comment_cites_the_design_card_that_users_do_not_have():
    # issue 23: a user of the package has README and docs/, never the project's design card
    cited = [
        f"{path.relative_to(ROOT)}:{number}"
        for folder in ("manual", "reference", "softmax_grad", "benchmarks", "tests")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "DESIGN" + ".md" in line
    ]
    assert not cited, f"cite README or docs/ instead: {cited}"
