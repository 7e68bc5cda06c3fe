"""``check``: the battery, the oracle on every case, the user's function on every case, one report.

The settings are validated once, into one frozen ``Settings``. The target runs
in a child process (``reference.checker.sealed``), started first so that it
loads the target while the oracle runs here, all cases side by side (one
compilation per case shape, the compilations overlapping); then the function,
one call per case, in that child. A function no other process can find (a
lambda, a closure) runs in this process instead, in a worker thread.
"""

from __future__ import annotations

import copy
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ml_dtypes  # noqa: F401  (registers NumPy's "bfloat16")
import numpy as np

from reference.checker import battery as cases_of
from reference.checker import frameworks, kinds, oracle, repro, runner, sealed
from reference.checker import mesh as meshes
from reference.checker.battery import Case
from reference.checker.errors import CheckError
from reference.checker.report import Report
from reference.checker.targets import signature_problem
from reference.checker.values import judge_call
from reference.checker.verdict import FAIL, CaseResult, Context, Expected
from softmax_grad.bounds import LOW_PRECISION, MULTIPLE, row_facts
from softmax_grad.contract import LOSS_REDUCTIONS, check_options, check_reduction

DTYPES = ("float64", "float32", "bfloat16", "float16")


@dataclass(frozen=True)
class Settings:
    """Everything a check is run at, validated once (``Settings.of``); the oracle and the report read it."""

    kind: str
    framework: str
    dtype: str
    strict: bool
    reduction: str
    reg_scale: float
    options: dict[str, Any]  # weight, ignore_index, label_smoothing, z_loss, softcap: as the oracle takes them
    seed: int
    timeout: float
    mesh: tuple[int, int] | None = None  # (batch, vocabulary) shards of a simulated mesh (reference.checker.mesh)

    @classmethod
    def of(cls, kind: str, *, framework: str = "auto", dtype: str = "float64", strict: bool = False,
           reduction: str = "mean", reg_scale: float = 0.5, weight: Any = None, ignore_index: int | None = None,
           label_smoothing: float = 0.0, z_loss: float = 0.0, softcap: float | None = None, seed: int = 0,
           timeout: float = runner.DEFAULT_TIMEOUT, mesh: Any = None) -> Settings:  # fmt: skip
        """The settings of ``check``'s arguments; ValueError or TypeError naming the first bad one."""
        kinds.get(kind)
        if framework != "auto" and framework not in frameworks.ADAPTERS:
            raise ValueError(f"framework must be one of {list(frameworks.FRAMEWORKS)}, got {framework!r}")
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
        if not np.isfinite(reg_scale) or reg_scale < 0:
            raise ValueError(f"reg_scale must be finite and >= 0, got {reg_scale}")
        if not (timeout > 0):
            raise ValueError(f"timeout must be > 0 seconds (inf: no limit), got {timeout}")
        classes = None if weight is None else len(np.atleast_1d(weight))
        options = check_options(classes or 1, weight=weight, ignore_index=ignore_index,
                                label_smoothing=label_smoothing, z_loss=z_loss, softcap=softcap)  # fmt: skip
        names = ("weight", "ignore_index", "label_smoothing", "z_loss", "softcap")
        values = {name: getattr(options, name) for name in names}
        shape = meshes.parse(mesh)
        if shape is not None:
            meshes.require(kind, shape, classes)
            if framework not in ("auto", "jax"):
                meshes.require_jax(framework)
        return cls(kind, framework, dtype, bool(strict), _reduction(kind, reduction), float(reg_scale), values,
                   int(seed), float(timeout), shape)  # fmt: skip

    @property
    def classes(self) -> int | None:
        """C when a class ``weight`` fixes it."""
        weight = self.options["weight"]
        return None if weight is None else len(weight)

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    def saved(self) -> dict[str, Any]:
        """What ``repro`` saves beside a failing case, to rerun it at these settings."""
        return {"kind": self.kind, "framework": self.framework, "dtype": self.dtype, "strict": self.strict,
                "reduction": self.reduction, "reg_scale": self.reg_scale, "options": self.options,
                "timeout": self.timeout}  # fmt: skip


def _reduction(kind: str, reduction: Any) -> str:
    """``reduction`` checked for ``kind``: "none" (per-row losses, eq. 55) only where the loss has rows."""
    reduction = check_reduction(reduction, LOSS_REDUCTIONS)
    if reduction == "none" and kind not in cases_of.VJP_KINDS:
        raise ValueError(
            f"reduction='none' is for the kinds whose loss is a sum over rows, scores and linear_ce; kind {kind!r} "
            "adds a penalty on the weights to the reduced loss, which belongs to no row: use 'mean' or 'sum'"
        )
    return reduction


def _denominator(y: np.ndarray, weight: np.ndarray | None, ignore_index: int | None) -> float:
    """What eq. (20)'s "mean" divides by: the label weights of the kept rows (their number, unweighted)."""
    kept = y if ignore_index is None else y[y != ignore_index]
    return float(len(kept) if weight is None else np.sum(weight[kept]))


class _Oracle:
    """The oracle's result on one case at the check's settings, and at other ``reg``, ReLU conventions or cotangents."""

    def __init__(self, kind: kinds.Kind, case: Case, settings: Settings, sizes: dict[str, int]) -> None:
        self.kind, self.settings, self.sizes, self.dtype = kind, settings, sizes, settings.np_dtype
        self.inputs = oracle.rounded(case.inputs, self.dtype)  # low-precision inputs are judged as the numbers they are
        self.reg = self.inputs.get("reg", 0.0)
        self.grad_output = case.grad_output  # eq. (54)'s g: on a grid that every dtype holds exactly (battery)
        self.cache: dict[tuple, Expected] = {}
        self.bound_cache: dict[tuple, dict[str, Any]] = {}

    def bounds(self, reg: float | None = None, cotangent: Any = None) -> dict[str, Any]:
        """Each output's rounding-error bound at this case (docs/derivation.md section 9), at ``reg``.

        The gradients' bounds are those of the VJP at the case's cotangent, or at ``cotangent`` (eq. 54).
        """
        reg = self.reg if reg is None else reg
        g = self.grad_output if cotangent is None else cotangent
        key = (reg, None if g is None else np.asarray(g).tobytes())
        if key not in self.bound_cache:
            options = dict(self.settings.options)
            self.bound_cache[key] = oracle.bounds(
                self.kind, self.inputs, self.dtype, reduction=self.settings.reduction, options=options,
                reg=2.0 * self.settings.reg_scale * reg, grad_output=g,
            )  # fmt: skip
        return self.bound_cache[key]

    def own(self, adapter: Any) -> Expected | None:
        """The framework's own plain autodiff on this case in its low precision; None in float32 and float64."""
        if self.dtype.name not in LOW_PRECISION:
            return None
        # the framework's plain loss is the suite's own code, not the target's: it runs here, beside the oracle
        return frameworks.adapter(adapter.NAME).own(
            self.kind, cases_of.cast(self.inputs, self.dtype), reduction=self.settings.reduction,
            options=dict(self.settings.options), reg=2.0 * self.settings.reg_scale * self.reg,
            grad_output=self.grad_output,
        )  # fmt: skip

    def at_unit_cotangent(self) -> _Oracle:
        """This oracle at cotangent 1 (ones for "none"): for a function that returns gradients it computed
        without being given the cotangent. The caches are shared: their keys hold the cotangent."""
        unit = copy.copy(self)
        unit.grad_output = None
        return unit

    @property
    def program(self) -> int:
        """What the compiled program depends on, once padded: the class count."""
        return _classes(self.kind, self.inputs)

    def __call__(self, reg: float | None = None, relu_gate_at_zero: bool = False, cotangent: Any = None) -> Expected:
        """The loss and the VJP at the case's cotangent (or at ``cotangent``: the diagnoses' other hypotheses)."""
        g = self.grad_output if cotangent is None else cotangent
        key = (self.reg if reg is None else reg, relu_gate_at_zero, None if g is None else np.asarray(g).tobytes())
        if key not in self.cache:
            inputs = dict(self.inputs)
            # R = reg_scale * reg * sum W^2 is eq. (3)'s reg'/2 * sum W^2 with reg' = 2 reg_scale reg
            if "reg" in inputs:
                inputs["reg"] = 2.0 * self.settings.reg_scale * key[0]
            static = {"relu_gate_at_zero": True} if relu_gate_at_zero else {}
            options = dict(self.settings.options)
            if options["ignore_index"] is None:
                options["ignore_index"] = PADDING_LABEL  # the padded rows' label; no real label is negative
            rows = len(self.inputs["y"])
            if g is not None and np.ndim(g) == 1:  # the padded rows' cotangent is 0: they add nothing (eq. 54)
                g = np.pad(np.asarray(g, np.float64), (0, self.sizes.get("N", rows) - rows))
            loss, gradients = oracle.expected(
                self.kind,
                self.kind.call_args(oracle.padded(self.kind, inputs, self.sizes, options["ignore_index"])),
                reduction=self.settings.reduction,
                options=options,
                grad_output=g,
                **static,
            )
            loss = loss[:rows].copy() if np.ndim(loss) else loss
            self.cache[key] = loss, oracle.unpadded(gradients, self.kind, self.inputs)
        return self.cache[key]


PADDING_LABEL = -1
UNIT_NOTE = ("the function returns its own gradients and has no grad_output parameter: they were judged as the "
             "gradient (cotangent 1); give it one to have its vector-Jacobian product judged (eq. 54)")


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


def _warm(oracles: list[_Oracle]) -> None:
    """Every case's default oracle result: one case per program first, in parallel, then the rest from the cache."""
    first: dict[int, _Oracle] = {}
    for item in oracles:
        first.setdefault(item.program, item)
    oracle.expected_many([item.__call__ for item in first.values()])
    for item in oracles:
        item()


def check(
    fn: Callable | str,
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
    mesh: Any = None,
) -> Report:
    """Run ``fn`` on the battery for ``kind`` and judge every output against the JAX reference.

    Args:
        fn: the function under test, called as ``KINDS[kind]`` says; or ``"path/to/file.py:function"``
            (``"package.module:function"``), which only the child process imports.
        kind: ``"scores"``, ``"linear"``, ``"two_layer"`` or ``"linear_ce"`` (``f(X, W, y[, bias])``, the
            logits ``X W + b`` of a language model's last layer).
        framework: ``"numpy"``, ``"torch"``, ``"jax"``, or ``"auto"`` (what the function's module imports).
        dtype: ``"float64"``, ``"float32"``, ``"bfloat16"`` or ``"float16"``: the cases' dtype. Every output
            is judged by its rounding-error bound in that dtype (docs/derivation.md section 9); in bfloat16
            and float16 the framework's own plain autodiff of the loss runs beside it as a yardstick.
        strict: judge every output by its rounding-error bound alone (in bfloat16 and float16 the framework's
            own error is then reported, not allowed), and count warnings (a non-finite loss beside a right
            gradient on a robustness case) as failures.
        reduction: ``"mean"`` (eq. 4), ``"sum"``, or ``"none"`` (per-row losses, eq. 55; kinds scores and
            linear_ce). For these two kinds every case carries a random cotangent ``g`` (eq. 54): a lone loss
            is differentiated at it (``loss.backward(g)``, ``jax.vjp``), a function with a ``grad_output``
            parameter is called with it, and the gradients are judged against the oracle's VJP at ``g``.
        reg_scale: the penalty ``R = reg_scale * reg * sum W^2``; 0.5 is eq. (3).
        weight, ignore_index, label_smoothing, z_loss, softcap: the loss options the function implements
            (README, "Loss options"), applied by the oracle. A ``weight`` fixes C = ``len(weight)``.
        seed: seed of the random cases.
        timeout: seconds each case may take before the function counts as hung (``math.inf``: no limit).
        save_failure: where to save the first failing case (``.npz``); None saves nothing.
        target: how the rerun command can find ``fn`` again (``file.py:name``); a string ``fn`` is its own.
        mesh: ``(B, V)`` or ``"BxV"``: run a JAX ``fn`` (kinds ``linear_ce``, ``scores``) with its inputs split
            over a simulated ``B x V`` (batch x vocabulary) device mesh (``reference.checker.mesh``).

    Returns:
        A ``Report``: truthy when it passed; ``str(report)`` is the verdict; ``report.assert_passed()`` raises
        ``AssertionError`` otherwise.

    Raises:
        CheckError: ``fn`` cannot be loaded, or called with the kind's signature, or its framework is not installed.
        ValueError, TypeError: an unknown kind, framework, dtype or reduction, or a bad option.
    """
    start = time.perf_counter()
    settings = Settings.of(kind, framework=framework, dtype=dtype, strict=strict, reduction=reduction,
                           reg_scale=reg_scale, weight=weight, ignore_index=ignore_index,
                           label_smoothing=label_smoothing, z_loss=z_loss, softcap=softcap, seed=seed,
                           timeout=timeout, mesh=mesh)  # fmt: skip
    if not isinstance(fn, str) and not callable(fn):
        raise CheckError(f"the target is a {type(fn).__name__}, not a function")
    spec = kinds.get(kind)
    candidates = [spec.name] + ([spec.fallback] if spec.fallback else [])
    chosen = settings.framework
    if not isinstance(fn, str):  # what can be known here is known before any process starts
        spec = _callable_as(spec, {name: signature_problem(fn, kinds.get(name)) for name in candidates})
        chosen = frameworks.detect(fn) if chosen == "auto" else chosen
        if settings.mesh is not None:
            meshes.require_jax(chosen)
    child = sealed.open_child(fn, chosen, candidates, settings.timeout, settings.mesh)
    if child is None and settings.mesh is not None:
        raise CheckError("mesh: a lambda, a closure or a function of __main__ cannot be loaded by the fresh process "
                         "that holds the simulated devices; define it at the top level of a module")  # fmt: skip
    try:
        report = _check(fn, spec, chosen, settings, child, save_failure,
                        target or (fn if isinstance(fn, str) else None))  # fmt: skip
    finally:
        if child is not None:
            child.close()
    report.seconds = time.perf_counter() - start
    return report


def _callable_as(spec: kinds.Kind, problems: dict[str, str | None]) -> kinds.Kind:
    """``spec``, or its fallback (no bias) when only that fits; CheckError when neither does."""
    if spec.fallback and problems.get(spec.name) and not problems.get(spec.fallback):
        return kinds.get(spec.fallback)
    if problems.get(spec.name):
        raise CheckError(problems[spec.name])
    return spec


def _battery(spec: kinds.Kind, settings: Settings) -> list[Case]:
    classes = settings.classes if settings.mesh is None else meshes.mesh_classes(settings.mesh, settings.classes)
    battery = _cases(spec, settings, classes)
    if settings.mesh is None:
        return battery
    return [case for case in battery if meshes.unfit(spec, case.inputs, settings.mesh) is None]


def _cases(spec: kinds.Kind, settings: Settings, classes: int | None) -> list[Case]:
    """The battery at these settings: each case with its cotangent; masked lanes unless label smoothing (eq. 56)."""
    options = settings.options
    return cases_of.battery(spec.name, settings.seed, classes=classes, ignore_index=options["ignore_index"],
                            reduction=settings.reduction, masks=not options["label_smoothing"])  # fmt: skip


def _off_mesh(spec: kinds.Kind, settings: Settings) -> dict[str, str]:
    """The cases a mesh check does not run, and why."""
    if settings.mesh is None:
        return {}
    classes = meshes.mesh_classes(settings.mesh, settings.classes)
    battery = _cases(spec, settings, classes)
    return {case.name: why for case in battery if (why := meshes.unfit(spec, case.inputs, settings.mesh))}


def _oracles(spec: kinds.Kind, battery: list[Case], settings: Settings) -> list[_Oracle]:
    sizes = padding_sizes(spec, battery)
    oracles = [_Oracle(spec, case, settings, sizes) for case in battery]
    _warm(oracles)
    return oracles


def _check(
    fn: Callable | str,
    spec: kinds.Kind,
    chosen: str,
    settings: Settings,
    child: sealed.Child | None,
    save_failure: str | Path | None,
    target: str | None,
) -> Report:
    battery = _battery(spec, settings)
    oracles = _oracles(spec, battery, settings)  # while the child loads the target
    if child is not None:
        loaded = child.loaded()
        adapter: Any = child.adapter
        where = "in a child process"
        takes = bool(loaded.get("takes_grad_output"))
        if isinstance(fn, str):  # only the child has seen the function
            chosen, fitted = loaded["framework"], _callable_as(spec, loaded["problems"])
            if fitted is not spec:  # fn(X, W, y): no bias
                spec, battery = fitted, _battery(fitted, settings)
                oracles = _oracles(spec, battery, settings)
    else:  # a function that no other process can find runs here
        adapter = frameworks.adapter(chosen)
        takes = runner.takes_grad_output(fn)
        where = ("in the checker's own process: a lambda, a closure or a function of __main__ cannot be loaded by "
                 "another; define it at the top level of a module (or check file.py:function from the command "
                 "line) to run it apart")  # fmt: skip
    results: list[CaseResult] = []
    stopped: str | None = None
    for case, expected in zip(battery, oracles, strict=True):
        if stopped is not None:
            results.append(CaseResult(case.name, case.tier, FAIL, [f"not run: {stopped}"]))
            continue
        if child is not None:
            call = child.call(spec, case, settings.np_dtype, settings.timeout)
            stopped = child.gone
        else:
            call = runner.call(fn, spec, case, adapter, settings.np_dtype, settings.timeout)
            stopped = f"the function hung on {case.name!r}" if call.timed_out else None
        unit = case.grad_output is not None and not (takes or call.by_autodiff)
        if unit:  # it computed its gradients without seeing the cotangent: judged at 1
            expected = expected.at_unit_cotangent()
        results.append(judge_call(context(spec, case, settings, expected, adapter), case, call, adapter))
        if unit:
            results[-1].notes.append(UNIT_NOTE)
        if settings.mesh is not None and results[-1].status == FAIL:
            first = all(result.status != FAIL for result in results[:-1])
            results[-1].messages += _mesh_diagnosis(spec, case, settings, expected, call, first)
    if settings.mesh is not None:
        where += " " + meshes.describe(settings.mesh, _off_mesh(spec, settings))
    return _report(spec, settings, chosen, where, results, battery, save_failure, target)


def _mesh_diagnosis(
    spec: kinds.Kind, case: Case, settings: Settings, expected: _Oracle, call: runner.Call, deep: bool
) -> list[str]:
    """What a failing case's numbers say about the target's collectives (``reference.checker.mesh``)."""
    options = settings.options
    denominator = _denominator(np.asarray(case.labels), options["weight"], options["ignore_index"])
    return meshes.diagnose(spec, expected.inputs, call.result, expected(), settings.mesh, options, settings.reduction,
                           denominator, deep)  # fmt: skip


def context(spec: kinds.Kind, case: Case, settings: Settings, expected: _Oracle, adapter: Any) -> Context:
    """What the verdict needs on ``case``: the oracle, each output's bound, the framework's own result, row facts."""
    options = settings.options
    denominator = _denominator(np.asarray(case.labels), options["weight"], options["ignore_index"])
    facts = row_facts(oracle.logits(spec, expected.inputs), case.labels)
    return Context(spec, expected.dtype, settings.reduction, settings.reg_scale, denominator, expected,
                   options["softcap"], expected.bounds, expected.own(adapter), facts, settings.strict,
                   getattr(adapter, "NAME", ""), grad_output=expected.grad_output,
                   z_loss=float(options["z_loss"] or 0.0))  # fmt: skip


def _report(
    spec: kinds.Kind,
    settings: Settings,
    chosen: str,
    where: str,
    results: list[CaseResult],
    battery: list[Case],
    save_failure: str | Path | None,
    target: str | None,
) -> Report:
    auto = settings.framework == "auto"
    note = f" (auto: {'the function module imports ' + chosen if chosen != 'numpy' else 'no torch or jax seen'})"
    report = Report(
        settings.kind,
        spec.signature,
        chosen,
        settings.dtype,
        settings.reduction,
        settings.reg_scale,
        settings.options,
        settings.strict,
        {"multiple": MULTIPLE},
        results,
        framework_note=note if auto else "",
        ran=where,
    )
    failure = report.first_failure
    if failure is not None and save_failure is not None:
        path = Path(save_failure)
        case = next(c for c in battery if c.name == failure.name)
        repro.save(path, case, {**settings.saved(), "kind": spec.name})
        report.failure_file = str(path)
        if target:
            report.rerun = shlex.join([sys.executable, "-m", "reference.checker", str(path), target])
        else:
            report.rerun = f"from reference.checker import rerun; rerun({str(path)!r}, your_function)"
    return report
