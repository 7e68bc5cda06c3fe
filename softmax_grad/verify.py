"""``softmax-grad verify``: every variant against both oracles on the standard cases, as one table."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import ModuleType

import numpy as np

from softmax_grad.cases import FUNCTIONS, Case, compare_results, standard_cases
from softmax_grad.compare import Comparison, worst
from softmax_grad.report import markdown_row
from softmax_grad.tolerances import ORACLE_KINDS


@dataclass
class Row:
    """One function of one variant in one dtype, over all its standard cases."""

    function: str
    variant: str
    dtype: str
    cases: int = 0
    worst: dict[str, tuple[float, float]] = field(default_factory=dict)  # oracle -> (max abs, max rel)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def add(self, oracle: str, comparison: Comparison) -> None:
        old_abs, old_rel = self.worst.get(oracle, (0.0, 0.0))
        self.worst[oracle] = (worst([old_abs, comparison.max_abs_error]), worst([old_rel, comparison.max_rel_error]))
        if not comparison.ok:
            self.failures.append(f"[{oracle}] {comparison.message}")


def verify(
    variants: Mapping[str, ModuleType],
    oracles: Mapping[str, ModuleType],
    cases: Iterable[Case] | None = None,
    dtypes: Iterable[type] = (np.float64, np.float32),
) -> list[Row]:
    """Run every variant on every case in every dtype; compare with every oracle."""
    rows: dict[tuple[str, str, str], Row] = {}
    for base in standard_cases() if cases is None else cases:
        for dtype in dtypes:
            case = base.astype(dtype)
            expected = {name: case.call(module) for name, module in oracles.items()}
            for variant, module in variants.items():
                key = (case.function, variant, case.dtype.name)
                row = rows.setdefault(key, Row(*key))
                row.cases += 1
                try:
                    actual = case.call(module)
                except Exception as exc:  # a crash is a failed case, reported as such
                    row.failures.append(f"{variant}.{case.id}: raised {type(exc).__name__}: {exc}")
                    continue
                for oracle, result in expected.items():
                    for comparison in compare_results(case, actual, result, oracle, f"{variant}.{case.id}"):
                        row.add(oracle, comparison)
    order = {name: i for i, name in enumerate(FUNCTIONS)}
    return sorted(rows.values(), key=lambda r: (order[r.function], list(variants).index(r.variant), r.dtype))


def format_table(rows: list[Row]) -> str:
    """A Markdown table: one row per function, variant and dtype; worst errors per oracle."""
    header = ["function", "variant", "dtype", "cases"]
    for oracle in ORACLE_KINDS:
        header += [f"{oracle} max abs", f"{oracle} max rel"]
    header.append("verdict")
    lines = [markdown_row(header), "|" + "---|" * len(header)]
    for row in rows:
        cells = [row.function, row.variant, row.dtype, str(row.cases)]
        for oracle in ORACLE_KINDS:
            max_abs, max_rel = row.worst.get(oracle, (float("nan"), float("nan")))
            cells += [f"{max_abs:.1e}", f"{max_rel:.1e}"]
        cells.append("pass" if row.ok else "FAIL")
        lines.append(markdown_row(cells))
    return "\n".join(lines)
