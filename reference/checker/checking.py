"""``check``: the battery, the oracle on every case, the user's function on every case, one report.

The oracle runs first, all cases side by side (one compilation per case shape,
the compilations overlapping), then the function, one fenced call per case.
"""

from __future__ import annotations

import inspect
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ml_dtypes  # noqa: F401  (registers NumPy's "bfloat16")
import numpy as np

from reference.checker import battery as cases_of
from reference.checker import frameworks, kinds, oracle, repro, runner
from reference.checker.battery import Case
from reference.checker.errors import CheckError
from reference.checker.report import Report
from reference.checker.verdict import FAIL, CaseResult, Context, Expected, judge
from softmax_grad.bounds import LOW_PRECISION, MULTIPLE, row_facts
from softmax_grad.contract import check_options, check_reduction

DTYPES = ("float64", "float32", "bfloat16", "float16")


def _binds(fn: Callable, example: tuple) -> bool:
    try:
        inspect.signature(fn).bind(*example)
    except (TypeError, ValueError):
        return False
    return True


def _check_signature(fn: Callable, kind: kinds.Kind, example: tuple) -> None:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # builtins and some C functions have no signature to check
    try:
        signature.bind(*example)
    except TypeError as exc:
        name = getattr(fn, "__name__", repr(fn))
        raise CheckError(f"{name}{signature} cannot be called as {kind.signature}: {exc}") from None


def _denominator(y: np.ndarray, weight: np.ndarray | None, ignore_index: int | None) -> float:
    """What eq. (20)'s "mean" divides by: the label weights of the kept rows (their number, unweighted)."""
    kept = y if ignore_index is None else y[y != ignore_index]
    return float(len(kept) if weight is None else np.sum(weight[kept]))


class _Oracle:
    """The oracle's result on one case at the check's settings, and at other ``reg`` or ReLU conventions."""

    def __init__(
        self, kind: kinds.Kind, case: Case, dtype: np.dtype, settings: dict[str, Any], sizes: dict[str, int]
    ) -> None:
        self.kind, self.settings, self.sizes, self.dtype = kind, settings, sizes, dtype
        self.inputs = oracle.rounded(case.inputs, dtype)  # low-precision inputs are judged as the numbers they are
        self.reg = self.inputs.get("reg", 0.0)
        self.cache: dict[tuple, Expected] = {}
        self.bound_cache: dict[float, dict[str, Any]] = {}

    def bounds(self, reg: float | None = None) -> dict[str, Any]:
        """Each output's rounding-error bound at this case (docs/derivation.md section 9), at ``reg``."""
        reg = self.reg if reg is None else reg
        if reg not in self.bound_cache:
            options = dict(self.settings["options"])
            self.bound_cache[reg] = oracle.bounds(
                self.kind, self.inputs, self.dtype, reduction=self.settings["reduction"], options=options,
                reg=2.0 * self.settings["reg_scale"] * reg,
            )  # fmt: skip
        return self.bound_cache[reg]

    def own(self, adapter: Any) -> Expected | None:
        """The framework's own plain autodiff on this case in its low precision; None in float32 and float64."""
        if self.dtype.name not in LOW_PRECISION:
            return None
        return adapter.own(
            self.kind, cases_of.cast(self.inputs, self.dtype), reduction=self.settings["reduction"],
            options=dict(self.settings["options"]), reg=2.0 * self.settings["reg_scale"] * self.reg,
        )  # fmt: skip

    @property
    def program(self) -> int:
        """What the compiled program depends on, once padded: the class count."""
        return _classes(self.kind, self.inputs)

    def __call__(self, reg: float | None = None, relu_gate_at_zero: bool = False) -> Expected:
        key = (self.reg if reg is None else reg, relu_gate_at_zero)
        if key not in self.cache:
            inputs = dict(self.inputs)
            # R = reg_scale * reg * sum W^2 is eq. (3)'s reg'/2 * sum W^2 with reg' = 2 reg_scale reg
            if "reg" in inputs:
                inputs["reg"] = 2.0 * self.settings["reg_scale"] * key[0]
            static = {"relu_gate_at_zero": True} if relu_gate_at_zero else {}
            options = dict(self.settings["options"])
            if options["ignore_index"] is None:
                options["ignore_index"] = PADDING_LABEL  # the padded rows' label; no real label is negative
            loss, gradients = oracle.expected(
                self.kind,
                self.kind.call_args(oracle.padded(self.kind, inputs, self.sizes, options["ignore_index"])),
                reduction=self.settings["reduction"],
                options=options,
                **static,
            )
            self.cache[key] = loss, oracle.unpadded(gradients, self.kind, self.inputs)
        return self.cache[key]


PADDING_LABEL = -1


def _classes(kind: kinds.Kind, inputs: dict[str, Any]) -> int:
    """C, read from the first argument that has a class axis."""
    for name, axes in kind.axes.items():
        value = inputs[name]
        for key, ax in axes.items() if isinstance(axes, dict) else [(None, axes)]:
            if "C" in ax:
                return int(np.shape(value[key] if key else value)[ax.index("C")])
    raise ValueError(f"kind {kind.name!r} has no class axis")


def padding_sizes(kind: kinds.Kind, battery: list[Case]) -> dict[str, int]:
    """The largest size of every axis but C over the battery: every case is padded to it for the oracle."""
    sizes: dict[str, int] = {}
    for case in battery:
        for name, axes in kind.axes.items():
            value = case.inputs[name]
            for key, ax in axes.items() if isinstance(axes, dict) else [(None, axes)]:
                for axis, n in zip(ax, np.shape(value[key] if key else value), strict=True):
                    if axis != "C":
                        sizes[axis] = max(sizes.get(axis, 0), n)
    return sizes


def context(spec: kinds.Kind, case: Case, expected: _Oracle, adapter: Any, settings: dict[str, Any]) -> Context:
    """What the verdict needs on ``case``: the oracle, each output's bound, the framework's own result, row facts."""
    options = settings["options"]
    denominator = _denominator(np.asarray(case.labels), options["weight"], options["ignore_index"])
    facts = row_facts(oracle.logits(spec, expected.inputs), case.labels)
    return Context(spec, expected.dtype, settings["reduction"], settings["reg_scale"], denominator, expected,
                   options["softcap"], expected.bounds, expected.own(adapter), facts)  # fmt: skip


def _warm(oracles: list[_Oracle]) -> None:
    """Every case's default oracle result: one case per program first, in parallel, then the rest from the cache."""
    first: dict[int, _Oracle] = {}
    for item in oracles:
        first.setdefault(item.program, item)
    oracle.expected_many([item.__call__ for item in first.values()])
    for item in oracles:
        item()


def check(
    fn: Callable,
    kind: str,
    *,
    framework: str = "auto",
    dtype: str = "float64",
    strict: bool = False,
    reduction: str = "mean",
    reg_scale: float = 0.5,
    weight: Any = None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    seed: int = 0,
    timeout: float = runner.DEFAULT_TIMEOUT,
    save_failure: str | Path | None = None,
    target: str | None = None,
) -> Report:
    """Run ``fn`` on the battery for ``kind`` and judge every output against the JAX reference.

    Args:
        fn: the function under test, called as ``KINDS[kind]`` says.
        kind: ``"scores"``, ``"linear"`` or ``"two_layer"``.
        framework: ``"numpy"``, ``"torch"``, ``"jax"``, or ``"auto"`` (what the function's module imports).
        dtype: ``"float64"``, ``"float32"``, ``"bfloat16"`` or ``"float16"``: the cases' dtype. Every output
            is judged by its rounding-error bound in that dtype (docs/derivation.md section 9); in bfloat16
            and float16 the framework's own plain autodiff of the loss runs beside it as a yardstick.
        strict: count warnings (a non-finite loss beside a right gradient on a robustness case) as failures.
        reduction: ``"mean"`` (eq. 4) or ``"sum"``.
        reg_scale: the penalty ``R = reg_scale * reg * sum W^2``; 0.5 is eq. (3).
        weight, ignore_index, label_smoothing, z_loss, softcap: the loss options the function implements
            (DESIGN.md, "Loss options"), applied by the oracle. A ``weight`` fixes C = ``len(weight)``.
        seed: seed of the random cases.
        timeout: seconds each case may take before the function counts as hung.
        save_failure: where to save the first failing case (``.npz``); None saves nothing.
        target: how the rerun command can find ``fn`` again (``file.py:name``).

    Returns:
        A ``Report``: truthy when it passed; ``report.assert_passed()`` raises ``AssertionError`` otherwise.

    Raises:
        CheckError: ``fn`` cannot be called with the kind's signature, or its framework is not installed.
        ValueError, TypeError: an unknown kind, framework, dtype or reduction, or a bad option.
    """
    start = time.perf_counter()
    spec = kinds.get(kind)
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
    reduction = check_reduction(reduction)
    if not np.isfinite(reg_scale) or reg_scale < 0:
        raise ValueError(f"reg_scale must be finite and >= 0, got {reg_scale}")
    if not (timeout > 0):
        raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
    classes = None if weight is None else len(np.atleast_1d(weight))
    options = check_options(
        classes or 1,
        weight=weight,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        z_loss=z_loss,
        softcap=softcap,
    )
    if not callable(fn):
        raise CheckError(f"the target is a {type(fn).__name__}, not a function")
    chosen = frameworks.detect(fn) if framework == "auto" else framework
    adapter = frameworks.adapter(chosen)
    note = f" (auto: {'the function module imports ' + chosen if chosen != 'numpy' else 'no torch or jax seen'})"
    battery = cases_of.battery(kind, seed, classes=classes, ignore_index=options.ignore_index)
    if spec.fallback and not _binds(fn, spec.call_args(battery[0].inputs)):
        spec = kinds.get(spec.fallback)  # fn(X, W, y): no bias
        battery = cases_of.battery(spec.name, seed, classes=classes, ignore_index=options.ignore_index)
    _check_signature(fn, spec, spec.call_args(battery[0].inputs))
    np_dtype = np.dtype(dtype)
    option_values = {
        "weight": options.weight,
        "ignore_index": options.ignore_index,
        "label_smoothing": options.label_smoothing,
        "z_loss": options.z_loss,
        "softcap": options.softcap,
    }
    settings = {"reduction": reduction, "reg_scale": reg_scale, "options": option_values}
    sizes = padding_sizes(spec, battery)
    oracles = [_Oracle(spec, case, np_dtype, settings, sizes) for case in battery]
    _warm(oracles)
    results: list[CaseResult] = []
    hung: str | None = None
    for case, expected in zip(battery, oracles, strict=True):
        if hung is not None:
            results.append(CaseResult(case.name, case.tier, FAIL, [f"not run: the function hung on {hung!r}"]))
            continue
        call = runner.call(fn, spec, case, adapter, np_dtype, timeout)
        hung = case.name if call.timed_out else None
        results.append(judge(context(spec, case, expected, adapter, settings), case, call, adapter))
    report = Report(
        kind,
        spec.signature,
        chosen,
        dtype,
        reduction,
        reg_scale,
        option_values,
        strict,
        {"multiple": MULTIPLE},
        results,
        framework_note=note if framework == "auto" else "",
    )
    failure = report.first_failure
    if failure is not None and save_failure is not None:
        path = Path(save_failure)
        case = next(c for c in battery if c.name == failure.name)
        repro.save(path, case, {"kind": kind, "framework": chosen, "dtype": dtype, "strict": strict,
                                **settings, "timeout": timeout})  # fmt: skip
        report.failure_file = str(path)
        if target:
            report.rerun = shlex.join([sys.executable, "-m", "reference.checker", str(path), target])
        else:
            report.rerun = f"from reference.checker import rerun; rerun({str(path)!r}, your_function)"
    report.seconds = time.perf_counter() - start
    return report
