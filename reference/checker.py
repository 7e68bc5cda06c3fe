"""Check a user's own softmax-loss implementation against the JAX reference.

``check(fn, kind=...)`` calls ``fn`` on a battery of float64 cases (fixed edge
cases, then seeded random ones), compares its loss and every gradient with
``reference`` (JAX autodiff) at the suite's float64 tolerance, and returns a
``Report`` that can be asserted on. The command ``softmax-grad check`` is the
same from the shell.

The three kinds fix the signature ``fn`` is called with:

* ``"scores"``: ``fn(scores, y) -> (loss, dscores)``;
* ``"linear"``: ``fn(W, X, y, reg) -> (loss, dW)``, the course exercise's
  ``softmax_loss_naive`` / ``softmax_loss_vectorized``;
* ``"two_layer"``: ``fn(params, X, y, reg) -> (loss, grads)``, with ``params``
  and ``grads`` holding ``W1``, ``b1``, ``W2``, ``b2``.

The penalty is ``R = reg_scale * reg * sum W^2``: ``reg_scale=0.5`` is the
derivation's convention (eq. 3), ``1.0`` the one many course versions use. When
a case fails, the checker tries the other convention (and the other reduction)
and says if the result matches that instead.

>>> import numpy as np
>>> def my_loss(scores, y):  # forgets the 1/N of the gradient
...     shifted = scores - scores.max(axis=1, keepdims=True)
...     p = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
...     rows = np.arange(len(y))
...     loss = np.mean(np.log(np.exp(shifted).sum(axis=1)) - shifted[rows, y])
...     p[rows, y] -= 1
...     return loss, p
>>> report = check(my_loss, kind="scores")
>>> report.passed, report.first_failure.name
(False, 'C=2')
>>> report.first_failure.messages[0].split(" at index")[0]
'dscores: values differ'
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reference import autodiff
from softmax_grad.cases import dead_units_case, spread_1000
from softmax_grad.cases import params as make_params
from softmax_grad.compare import Comparison, compare, worst
from softmax_grad.contract import PARAM_NAMES
from softmax_grad.tolerances import tolerance

__all__ = ["KINDS", "CaseResult", "CheckError", "Report", "check", "load_target", "rerun"]

KINDS = {
    "scores": "f(scores, y) -> (loss, dscores)",
    "linear": "f(W, X, y, reg) -> (loss, dW)",
    "two_layer": "f(params, X, y, reg) -> (loss, grads), grads with keys W1, b1, W2, b2",
}
TOLERANCE = tolerance(np.float64, "autodiff")


class CheckError(Exception):
    """The target cannot be loaded, or cannot be called with the kind's signature."""


@dataclass
class CaseResult:
    """The verdict on one case: passed, and what went wrong if not."""

    name: str
    passed: bool
    messages: list[str] = field(default_factory=list)
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0


@dataclass
class Report:
    """The verdict on a function: ``bool(report)`` is True when every case passed."""

    kind: str
    reduction: str
    reg_scale: float
    cases: list[CaseResult]
    failure_file: str | None = None
    rerun: str | None = None

    @property
    def passed(self) -> bool:
        return all(case.passed for case in self.cases)

    def __bool__(self) -> bool:
        return self.passed

    @property
    def first_failure(self) -> CaseResult | None:
        return next((case for case in self.cases if not case.passed), None)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}

    def format(self) -> str:
        """A table of the cases, then the first failure spelled out."""
        lines = [
            f"checking a {self.kind!r} function, {KINDS[self.kind]}",
            f"reduction={self.reduction!r}, penalty R = {self.reg_scale} * reg * sum W^2; "
            f"tolerance rtol={TOLERANCE.rtol:g}, atol={TOLERANCE.atol:g} x max|expected|",
            "",
            "| case | verdict | max abs error | max rel error |",
            "|---|---|---|---|",
        ]
        for case in self.cases:
            verdict = "pass" if case.passed else "FAIL"
            lines.append(f"| {case.name} | {verdict} | {case.max_abs_error:.1e} | {case.max_rel_error:.1e} |")
        failure = self.first_failure
        passed = sum(case.passed for case in self.cases)
        lines.append(f"\n{passed} of {len(self.cases)} cases pass")
        if failure is not None:
            lines.append(f"\nfirst failing case: {failure.name!r}")
            lines += [f"  {message}" for message in failure.messages]
            if self.failure_file:
                lines.append(f"\ninputs saved to {self.failure_file}; to rerun that case:\n  {self.rerun}")
        return "\n".join(lines)


# ----------------------------------------------------------------- the battery
def _battery(kind: str, seed: int) -> list[tuple[str, dict[str, Any]]]:
    """Named float64 cases: fixed edge cases first, then two seeded random ones."""
    rng = np.random.default_rng(seed)
    fixed = np.random.default_rng(12345)
    cases: list[tuple[str, dict[str, Any]]] = []
    if kind == "scores":
        cases += [
            ("N=1", {"scores": fixed.standard_normal((1, 5)), "y": np.array([3])}),
            ("C=2", {"scores": fixed.standard_normal((6, 2)), "y": np.array([0, 1, 1, 0, 1, 0])}),
            ("ties", {"scores": np.zeros((3, 4)), "y": np.array([0, 3, 1])}),
            ("logit spread 1000", dict(zip(("scores", "y"), spread_1000(), strict=True))),
        ]
        for k in range(2):
            N, C = int(rng.integers(2, 20)), int(rng.integers(2, 12))
            cases.append(
                (f"random {k + 1} ({N}x{C})", {"scores": 3 * rng.standard_normal((N, C)), "y": rng.integers(0, C, N)})
            )
        return cases
    if kind == "linear":

        def linear(N: int, D: int, C: int, reg: float, gen: np.random.Generator, w_scale: float = 1.0) -> dict:
            W = w_scale * gen.standard_normal((D, C)) / np.sqrt(D)
            return {"W": W, "X": gen.standard_normal((N, D)), "y": gen.integers(0, C, N), "reg": reg}

        cases += [
            ("N=1", linear(1, 4, 3, 0.0, fixed)),
            ("C=2", linear(8, 5, 2, 0.1, fixed)),
            ("ties (W = 0)", {**linear(5, 3, 4, 0.0, fixed), "W": np.zeros((3, 4))}),
            ("reg 0", linear(12, 6, 4, 0.0, np.random.default_rng(7))),
            ("reg 0.5", linear(12, 6, 4, 0.5, np.random.default_rng(7))),
            ("logit spread 1000", linear(6, 4, 5, 0.0, fixed, w_scale=400.0)),
        ]
        for k in range(2):
            N, D, C = (int(rng.integers(2, n)) for n in (20, 10, 10))
            cases.append((f"random {k + 1} ({N}x{D}x{C})", linear(N, D, C, float(rng.choice([0.0, 0.25])), rng)))
        return cases

    def two_layer(N: int, D: int, H: int, C: int, reg: float, gen_seed: int, w2_scale: float = 1.0) -> dict:
        gen = np.random.default_rng(gen_seed)
        p = make_params(D, H, C, gen_seed)
        p["W2"] = w2_scale * p["W2"]
        return {"params": p, "X": gen.standard_normal((N, D)), "y": gen.integers(0, C, N), "reg": reg}

    dead_case = dead_units_case(0.1)
    dead = dict(zip(("params", "X", "y"), dead_case.args, strict=True)) | dead_case.kwargs
    cases += [
        ("N=1", two_layer(1, 3, 4, 2, 0.0, 1)),
        ("C=2", two_layer(6, 3, 4, 2, 0.0, 2)),
        ("reg 0", two_layer(16, 5, 8, 4, 0.0, 3)),
        ("reg 0.1", two_layer(16, 5, 8, 4, 0.1, 3)),
        ("dead ReLU units", dead),
        ("logit spread 1000", two_layer(5, 3, 4, 3, 0.0, 4, w2_scale=800.0)),
    ]
    for k in range(2):
        N, D, H, C = (int(rng.integers(2, n)) for n in (16, 6, 8, 6))
        cases.append(
            (
                f"random {k + 1} ({N}x{D}x{H}x{C})",
                two_layer(N, D, H, C, float(rng.choice([0.0, 0.1])), int(rng.integers(2**31))),
            )
        )
    return cases


def _call_args(kind: str, inputs: dict[str, Any]) -> tuple:
    if kind == "scores":
        return (inputs["scores"], inputs["y"])
    if kind == "linear":
        return (inputs["W"], inputs["X"], inputs["y"], inputs["reg"])
    return (inputs["params"], inputs["X"], inputs["y"], inputs["reg"])


def _expected(
    kind: str, inputs: dict[str, Any], reduction: str, reg_scale: float
) -> tuple[float, dict[str, np.ndarray]]:
    """The reference loss and gradients, named.

    The penalty ``reg_scale * reg * sum W^2`` is eq. (3)'s ``reg'/2 * sum W^2`` with ``reg' = 2 reg_scale reg``.
    """
    if kind == "scores":
        loss, dS = autodiff.softmax_loss(inputs["scores"], inputs["y"], reduction=reduction)
        return loss, {"dscores": dS}
    reg = 2.0 * reg_scale * inputs["reg"]
    if kind == "linear":
        loss, dW = autodiff.linear_loss(inputs["W"], inputs["X"], inputs["y"], reg=reg, reduction=reduction)
        return loss, {"dW": dW}
    loss, grads = autodiff.two_layer_loss(inputs["params"], inputs["X"], inputs["y"], reg=reg)
    return loss, grads


def _named_gradients(kind: str, gradient: Any) -> tuple[dict[str, Any], list[str]]:
    """The function's gradient output, named as the reference's; problems as messages."""
    if kind == "scores":
        return {"dscores": gradient}, []
    if kind == "linear":
        return {"dW": gradient}, []
    if not isinstance(gradient, Mapping):
        return {}, [f"grads is a {type(gradient).__name__}, expected a mapping with keys W1, b1, W2, b2"]
    missing = [key for key in PARAM_NAMES if key not in gradient]
    return dict(gradient), [f"grads is missing {key!r}" for key in missing]


def _compare_all(loss: Any, gradients: dict[str, Any], expected: tuple[float, dict]) -> list[Comparison]:
    want_loss, want = expected
    comparisons = [compare(loss, want_loss, TOLERANCE, label="loss")]
    for name, value in want.items():
        if name in gradients:
            comparisons.append(compare(gradients[name], value, TOLERANCE, label=name))
    return comparisons


def _copy(inputs: dict[str, Any]) -> dict[str, Any]:
    """Fresh copies of the arrays (so writes into them can be seen); ``reg`` stays the float it is."""

    def fresh(value: Any) -> Any:
        return value.copy() if isinstance(value, np.ndarray) else value

    return {
        k: ({kk: fresh(vv) for kk, vv in v.items()} if isinstance(v, dict) else fresh(v)) for k, v in inputs.items()
    }


def _changed_inputs(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    changed = []
    for name, value in before.items():
        if isinstance(value, dict):
            changed += [f"params[{k!r}]" for k in value if not np.array_equal(value[k], after[name][k])]
        elif not np.array_equal(value, after[name]):
            changed.append(name)
    return changed


def _diagnose(kind: str, loss: Any, gradients: dict, inputs: dict, reduction: str, reg_scale: float) -> list[str]:
    """Which other convention, if any, the result matches."""
    alternatives = []
    if kind in ("linear", "two_layer") and inputs["reg"] > 0:
        other = 1.0 if reg_scale == 0.5 else 0.5
        alternatives.append((f"the reg_scale={other} convention (R = {other} * reg * sum W^2)", reduction, other))
    if kind in ("scores", "linear"):
        other_reduction = "sum" if reduction == "mean" else "mean"
        alternatives.append((f"reduction={other_reduction!r}", other_reduction, reg_scale))
    notes = []
    for description, alt_reduction, alt_scale in alternatives:
        if all(_compare_all(loss, gradients, _expected(kind, inputs, alt_reduction, alt_scale))):
            notes.append(f"the result matches {description}, not the one asked for")
    return notes


def _run_case(fn: Callable, kind: str, name: str, inputs: dict, reduction: str, reg_scale: float) -> CaseResult:
    given = _copy(inputs)
    try:
        result = fn(*_call_args(kind, given))
    except Exception as exc:  # the function failing is a verdict, not a crash of the checker
        return CaseResult(name, False, [f"the function raised {type(exc).__name__}: {exc}"], np.nan, np.nan)
    messages = [f"the function wrote into its argument {arg}" for arg in _changed_inputs(inputs, given)]
    if not (isinstance(result, tuple | list) and len(result) == 2):
        return CaseResult(
            name, False, [*messages, f"returned {type(result).__name__}, expected {KINDS[kind]}"], np.nan, np.nan
        )
    loss, gradient = result
    gradients, problems = _named_gradients(kind, gradient)
    comparisons = _compare_all(loss, gradients, _expected(kind, inputs, reduction, reg_scale))
    messages += problems + [c.message for c in comparisons if not c.ok]
    if messages:
        messages += _diagnose(kind, loss, gradients, inputs, reduction, reg_scale)
    max_abs = worst(c.max_abs_error for c in comparisons)
    max_rel = worst(c.max_rel_error for c in comparisons)
    return CaseResult(name, not messages, messages, max_abs, max_rel)


def _check_signature(fn: Callable, kind: str, example: tuple) -> None:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # builtins and some C functions have no signature to check
    try:
        signature.bind(*example)
    except TypeError as exc:
        name = getattr(fn, "__name__", repr(fn))
        raise CheckError(f"{name}{signature} cannot be called as {KINDS[kind]}: {exc}") from None


def check(
    fn: Callable,
    kind: str,
    *,
    reduction: str = "mean",
    reg_scale: float = 0.5,
    seed: int = 0,
    save_failure: str | Path | None = None,
    target: str | None = None,
) -> Report:
    """Run ``fn`` on the battery for ``kind`` and compare every output with the JAX reference.

    Args:
        fn: the function under test, called as ``KINDS[kind]`` says.
        kind: ``"scores"``, ``"linear"`` or ``"two_layer"``.
        reduction: ``"mean"`` (eq. 4) or ``"sum"``; ``two_layer`` is always mean.
        reg_scale: the penalty ``R = reg_scale * reg * sum W^2``; 0.5 is eq. (3).
        seed: seed of the random cases that follow the fixed ones.
        save_failure: where to save the first failing case's inputs (``.npz``); None saves nothing.
        target: how ``rerun`` can find ``fn`` again (``file.py:name``), for the rerun line.

    Returns:
        A ``Report``; ``report.passed`` (or ``bool(report)``) is True when every case passed.

    Raises:
        CheckError: ``fn`` cannot be called with the kind's signature.
        ValueError: an unknown kind or reduction, ``sum`` for ``two_layer``, or a negative ``reg_scale``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    if kind == "two_layer" and reduction != "mean":
        raise ValueError("reduction must be 'mean' for kind 'two_layer' (eq. 4 with 1/N)")
    if not np.isfinite(reg_scale) or reg_scale < 0:
        raise ValueError(f"reg_scale must be finite and >= 0, got {reg_scale}")
    if not callable(fn):
        raise CheckError(f"the target is a {type(fn).__name__}, not a function")
    battery = _battery(kind, seed)
    _check_signature(fn, kind, _call_args(kind, battery[0][1]))
    report = Report(kind, reduction, reg_scale, [_run_case(fn, kind, n, i, reduction, reg_scale) for n, i in battery])
    failure = report.first_failure
    if failure is not None and save_failure is not None:
        inputs = dict(battery)[failure.name]
        path = Path(save_failure)
        _save(path, kind, failure.name, inputs, reduction, reg_scale)
        report.failure_file = str(path)
        how = repr(target) if target else "your_function"
        report.rerun = f'python -c "from reference.checker import rerun; rerun({str(path)!r}, {how})"'
        if not target:
            report.rerun = f"from reference.checker import rerun; rerun({str(path)!r}, your_function)"
    return report


# ----------------------------------------------------------------- saving and rerunning
def _save(path: Path, kind: str, case: str, inputs: dict, reduction: str, reg_scale: float) -> None:
    arrays = {}
    for name, value in inputs.items():
        if isinstance(value, dict):
            arrays |= {f"params_{k}": v for k, v in value.items()}
        else:
            arrays[name] = np.asarray(value)
    np.savez(path, kind=kind, case=case, reduction=reduction, reg_scale=reg_scale, **arrays)


def rerun(path: str | Path, fn: Callable | str) -> CaseResult:
    """Reload a case saved by ``check`` and run ``fn`` (a function or a ``file.py:name`` target) on it.

    Prints the verdict and returns it.
    """
    with np.load(path) as data:
        kind, case = str(data["kind"]), str(data["case"])
        reduction, reg_scale = str(data["reduction"]), float(data["reg_scale"])
        inputs: dict[str, Any] = {k: data[k] for k in data.files if k not in ("kind", "case", "reduction", "reg_scale")}
    params = {k.removeprefix("params_"): inputs.pop(k) for k in list(inputs) if k.startswith("params_")}
    if params:
        inputs["params"] = params
    if "reg" in inputs:
        inputs["reg"] = float(inputs["reg"])
    function = load_target(fn) if isinstance(fn, str) else fn
    result = _run_case(function, kind, case, inputs, reduction, reg_scale)
    print(f"case {case!r} ({kind}): {'pass' if result.passed else 'FAIL'}")
    for message in result.messages:
        print(f"  {message}")
    return result


def load_target(spec: str) -> Callable:
    """Load ``path/to/file.py:function`` or ``package.module:function`` (``function`` may be dotted)."""
    where, sep, name = spec.rpartition(":")
    if not sep or not where or not name:
        raise CheckError(f"TARGET must be path/to/file.py:function or package.module:function, got {spec!r}")
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = Path(where)
        if not path.is_file():
            raise CheckError(f"no such file: {where}")
        sys.path.insert(0, str(path.resolve().parent))  # so that the file's own imports work
        module_spec = importlib.util.spec_from_file_location(f"softmax_grad_target_{path.stem}", path)
        module = importlib.util.module_from_spec(module_spec)
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:
            raise CheckError(f"importing {where} failed: {type(exc).__name__}: {exc}") from None
    else:
        try:
            module = importlib.import_module(where)
        except Exception as exc:
            raise CheckError(f"importing {where} failed: {type(exc).__name__}: {exc}") from None
    target: Any = module
    for part in name.split("."):
        if not hasattr(target, part):
            raise CheckError(f"{where} has no {name!r}")
        target = getattr(target, part)
    if not callable(target):
        raise CheckError(f"{spec} is a {type(target).__name__}, not a function")
    return target
