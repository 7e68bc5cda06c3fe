"""The report on a whole check: a table of the cases, the failures and warnings spelled out, standard JSON.

``bool(report)`` is True when no case failed (and, with ``strict``, none
warned); ``str(report)`` is the formatted verdict; ``report.assert_passed()``
raises ``AssertionError`` whose first line is the first failure (what pytest's
summary shows), then the verdict: the one line a user's own test needs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from reference.checker.verdict import FAIL, WARN, CaseResult


@dataclass
class Report:
    """The verdict on a function over the battery."""

    kind: str
    signature: str
    framework: str
    dtype: str
    reduction: str
    reg_scale: float
    options: dict[str, Any]
    strict: bool
    tolerance: dict[str, float]
    cases: list[CaseResult]
    seconds: float = 0.0
    failure_file: str | None = None
    rerun: str | None = None
    framework_note: str = ""
    ran: str = ""  # where the function ran: in a child process, or (a lambda, a closure) in the checker's own

    @property
    def failures(self) -> list[CaseResult]:
        return [case for case in self.cases if case.status == FAIL or (self.strict and case.status == WARN)]

    @property
    def warned(self) -> list[CaseResult]:
        return [case for case in self.cases if case.status == WARN]

    @property
    def passed(self) -> bool:
        return not self.failures

    def __bool__(self) -> bool:
        return self.passed

    @property
    def first_failure(self) -> CaseResult | None:
        return next(iter(self.failures), None)

    def __str__(self) -> str:
        return self.format()

    def assert_passed(self) -> None:
        """Raise ``AssertionError`` unless the check passed: the first failing line, then the formatted verdict."""
        failure = self.first_failure
        if failure is not None:
            why = (failure.messages or failure.warnings or ["failed"])[0]
            raise AssertionError(f"case {failure.name!r} ({failure.tier}) fails: {why}\n\n{self.format()}")

    def to_dict(self) -> dict[str, Any]:
        """Standard JSON: a NaN or infinite number becomes null, beside ``<field>_is`` saying which it was."""
        data = {**asdict(self), "passed": self.passed, "warnings": len(self.warned)}
        for case in data["cases"]:
            case["passed"] = case["status"] != FAIL and not (self.strict and case["status"] == WARN)
        return _json_safe(data)

    def format(self) -> str:
        """A table of the cases, then every warning and the first failure spelled out."""
        options = ", ".join(f"{k}={_shown(v)}" for k, v in self.options.items() if _shown(v) is not None) or "none"
        lines = [
            f"checking a {self.kind!r} function, {self.signature}",
            f"framework {self.framework}{self.framework_note}; {self.dtype} inputs; reduction={self.reduction!r}; "
            + (f"penalty R = {self.reg_scale:g} * reg * sum W^2; " if "reg" in self.signature else "")
            + f"loss options: {options}",
            *([f"the function ran {self.ran}"] if self.ran else []),
            f"judged by rounding-error bounds in {self.dtype} (docs/derivation.md section 9): an output passes "
            f"within {self.tolerance['multiple']:g} x its bound" + _yardstick(self.dtype, self.strict),
            "",
            "| case | tier | verdict | max abs error | max rel error | worst output, of its bound |"
            + (" your error / the framework's own |" if self.dtype in ("bfloat16", "float16") else ""),
            "|---|---|---|---|---|---|" + ("---|" if self.dtype in ("bfloat16", "float16") else ""),
        ]
        lines += [
            f"| {c.name} | {c.tier} | {_status(c, self.framework)} | {_errors(c)} | {_worst(c.ratios)} |"
            + (f" {_worst(c.own_ratios)} |" if self.dtype in ("bfloat16", "float16") else "")
            for c in self.cases
        ]
        failed = sum(case.status == FAIL for case in self.cases)
        summary = f"\n{len(self.cases) - failed} of {len(self.cases)} cases pass"
        if self.warned:
            summary += f", {len(self.warned)} with a warning" + (" (failures under --strict)" if self.strict else "")
        allowed = [case for case in self.cases if case.within_own and case.status != FAIL]
        if allowed:
            summary += (
                f", {len(allowed)} only within {self.framework}'s own {self.dtype} error, beyond their rounding "
                "bound (--strict fails them)"
            )
        lines.append(summary + f" ({self.seconds:.1f} s)")
        where: dict[str, list[str]] = {}  # one line per note, naming the cases it is about
        for case in self.cases:
            for note in case.notes:
                where.setdefault(note, []).append(case.name)
        for note, names in where.items():
            on = "every case" if len(names) == len(self.cases) > 1 else ", ".join(map(repr, names))
            lines.append(f"note on {on}: {note}")
        for case in allowed:
            lines += [f"\nBEYOND THE BOUND on {case.name!r}, passed by the framework's own error:",
                      *(f"  {text}" for text in case.within_own.values())]  # fmt: skip
        for case in self.warned:
            lines += [f"\nWARNING on {case.name!r} ({case.tier} case):", *(f"  {w}" for w in case.warnings)]
        failure = self.first_failure
        if failure is not None:
            lines.append(f"\nfirst failing case: {failure.name!r} ({failure.tier})")
            lines += [f"  {message}" for message in failure.messages or failure.warnings]
            if failure.traceback:
                lines += ["  the function's traceback:", *("    " + t for t in failure.traceback.splitlines())]
            if self.failure_file:
                lines.append(f"\ninputs saved to {self.failure_file}; to rerun that case:\n  {self.rerun}")
        verdict = "FAIL" if not self.passed else ("pass, with warnings" if self.warned else "pass")
        lines.append(f"\nverdict: {verdict}")
        return "\n".join(lines)


def _yardstick(dtype: str, strict: bool) -> str:
    """What stands beside the bound in the header's line: the framework's own error, in low precision."""
    if dtype not in ("bfloat16", "float16"):
        return ""
    return (
        " alone (strict: the framework's own error is reported, not allowed)"
        if strict
        else (" plus the framework's own error")
    )


def _status(case: CaseResult, framework: str) -> str:
    """The verdict cell: a pass that needed the framework's own error says so."""
    if case.within_own and case.status != FAIL:
        return f"{case.status}, within {framework}'s own error only"
    return case.status


def _errors(case: CaseResult) -> str:
    """The two error columns (loss and gradients alike); where no number means anything, why not."""
    if not (math.isnan(case.max_abs_error) or math.isnan(case.max_rel_error)):
        return f"{case.max_abs_error:.1e} | {case.max_rel_error:.1e}"
    said = " ".join(case.messages + case.warnings)
    for marker, word in ((": shape", "shape"), ("non-finite", "non-finite"), ("not run", "not run"),
                         (": dtype", "dtype"), ("the loss is ", "loss not finite")):  # fmt: skip
        if marker in said:
            return f"{word} | {word}"
    return "no result | no result" if case.status == FAIL else "- | -"


def _worst(ratios: dict[str, float]) -> str:
    """The output farthest from its yardstick: "W: 0.04"."""
    finite = {name: r for name, r in ratios.items() if not math.isnan(r)}
    if not finite:
        return "-"
    name = max(finite, key=lambda key: finite[key])
    return f"{name}: {finite[name]:.2g}"


def _shown(value: Any) -> Any:
    """An option as the header shows it; None when it is off."""
    if value is None or (isinstance(value, float) and value == 0.0):
        return None
    return value.tolist() if hasattr(value, "tolist") else value


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        safe = {}
        for key, item in value.items():
            if isinstance(item, float) and not math.isfinite(item):
                safe[key] = None
                safe[f"{key}_is"] = "NaN" if math.isnan(item) else ("Infinity" if item > 0 else "-Infinity")
            else:
                safe[key] = _json_safe(item)
        return safe
    if isinstance(value, list | tuple):
        return [None if isinstance(v, float) and not math.isfinite(v) else _json_safe(v) for v in value]
    if hasattr(value, "tolist"):  # a weight array among the options
        return _json_safe(value.tolist())
    return value
