"""``softmax-grad verify``: every variant against both oracles on the standard and option cases, as one table.

Rows come out one block at a time (a function, or one loss-option group of
``softmax_loss``), as soon as the block is computed, so that the command can
print them as it goes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import ModuleType

import numpy as np

from softmax_grad.cases import FUNCTIONS, Case, compare_results, option_cases, standard_cases
from softmax_grad.compare import Comparison, worst
from softmax_grad.report import markdown_row
from softmax_grad.tolerances import ORACLE_KINDS


@dataclass
class Row:
    """One function (and loss-option group) of one variant in one dtype, over all its cases."""

    function: str
    variant: str
    dtype: str
    options: str = ""  # the loss-option group (softmax_grad.cases.option_cases); "" for the standard cases
    cases: int = 0
    worst: dict[str, tuple[float, float]] = field(default_factory=dict)  # oracle -> (max abs, max rel)
    failures: list[str] = field(default_factory=list)
    # oracle -> the largest |error| / bound (docs/derivation.md eq. 44), where a bound judged the outputs
    ratios: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures

    def add(self, oracle: str, comparison: Comparison) -> None:
        old_abs, old_rel = self.worst.get(oracle, (0.0, 0.0))
        self.worst[oracle] = (worst([old_abs, comparison.max_abs_error]), worst([old_rel, comparison.max_rel_error]))
        if not math.isnan(comparison.ratio):
            self.ratios[oracle] = max(self.ratios.get(oracle, 0.0), comparison.ratio)
        if not comparison.ok:
            self.failures.append(f"[{oracle}] {comparison.message}")


def default_cases() -> list[Case]:
    """What ``softmax-grad verify`` runs: the standard cases, then every loss-option group."""
    return [*standard_cases(), *option_cases()]


def iter_verify(
    variants: Mapping[str, ModuleType],
    oracles: Mapping[str, ModuleType],
    cases: Iterable[Case] | None = None,
    dtypes: Iterable[type] = (np.float64, np.float32),
) -> Iterator[Row]:
    """Run every variant on every case in every dtype; compare with every oracle; yield rows block by block.

    A block is one function, or one option group of ``softmax_loss``; its rows
    (one per variant and dtype) are yielded as soon as its last case is done.
    The default cases are ``default_cases()``.
    """
    chosen = default_cases() if cases is None else list(cases)
    dtypes = tuple(dtypes)
    order = {name: i for i, name in enumerate(FUNCTIONS)}
    blocks: dict[tuple[str, str], list[Case]] = {}
    for case in sorted(chosen, key=lambda c: order[c.function]):  # stable: groups keep their order
        blocks.setdefault((case.function, case.group), []).append(case)
    for (function, group), block in blocks.items():
        rows = {
            (variant, np.dtype(dtype).name): Row(function, variant, np.dtype(dtype).name, group)
            for variant in variants
            for dtype in dtypes
        }
        for base in block:
            for dtype in dtypes:
                case = base.astype(dtype)
                expected = {name: case.call(module) for name, module in oracles.items()}
                for variant, module in variants.items():
                    row = rows[(variant, case.dtype.name)]
                    row.cases += 1
                    try:
                        actual = case.call(module)
                    except Exception as exc:  # a crash is a failed case, reported as such
                        row.failures.append(f"{variant}.{case.id}: raised {type(exc).__name__}: {exc}")
                        continue
                    for oracle, result in expected.items():
                        for comparison in compare_results(case, actual, result, oracle, f"{variant}.{case.id}"):
                            row.add(oracle, comparison)
        yield from rows.values()


def verify(
    variants: Mapping[str, ModuleType],
    oracles: Mapping[str, ModuleType],
    cases: Iterable[Case] | None = None,
    dtypes: Iterable[type] = (np.float64, np.float32),
) -> list[Row]:
    """Every row of ``iter_verify``, as one list."""
    return list(iter_verify(variants, oracles, cases, dtypes))


def table_header() -> str:
    """The two header lines of ``format_table``'s Markdown table.

    "of its bound" is the largest ``|error| / bound`` of the row's outputs
    judged by a rounding-error bound (float32 against autodiff, eq. 44); "-"
    where the table judged them (float64, finite differences).
    """
    header = ["function", "variant", "dtype", "cases"]
    for oracle in ORACLE_KINDS:
        header += [f"{oracle} max abs", f"{oracle} max rel"]
    header += ["of its bound", "verdict"]
    return markdown_row(header) + "\n" + "|" + "---|" * len(header)


def table_row(row: Row) -> str:
    """One line of ``format_table``: worst errors per oracle and the verdict."""
    cells = [f"{row.function} [{row.options}]" if row.options else row.function, row.variant, row.dtype, str(row.cases)]
    for oracle in ORACLE_KINDS:
        max_abs, max_rel = row.worst.get(oracle, (float("nan"), float("nan")))
        cells += [f"{max_abs:.1e}", f"{max_rel:.1e}"]
    # float32 outputs are judged by their rounding-error bounds: the worst ratio, "0.04" of its bound
    cells.append(f"{max(row.ratios.values()):.2g}" if row.ratios else "-")
    cells.append("pass" if row.ok else "FAIL")
    return markdown_row(cells)


def format_table(rows: list[Row]) -> str:
    """A Markdown table: one row per function (and option group), variant and dtype; worst errors per oracle."""
    return "\n".join([table_header(), *(table_row(row) for row in rows)])
