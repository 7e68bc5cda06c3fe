"""The verdict on one case: compare, apply the tier, and name the slip when the numbers show one.

A correctness case fails on any wrong value. A robustness case fails on a
wrong or non-finite gradient; a non-finite loss beside a right gradient there
is a warning that names the cause and the stable form (eq. 15). Mutated
inputs, a raise, a hang or a malformed result fail anywhere.

In bfloat16 and float16 an output passes within MULTIPLE x (its bound + the
framework's own error); one that passes only by that allowance, beyond its
bound, is said plainly (``CaseResult.within_own``), with where the excess sits.
``strict`` judges by the bound alone.

When a case fails, the result is held against the slips people make (the sum's
gradient for the mean's, the penalty missing, doubled or halved, the sign
flipped, a square matrix transposed) and the first one it matches is named;
a slip the case cannot tell apart (mean and sum at N = 1) is never suggested.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from reference.checker.battery import ROBUSTNESS, Case
from reference.checker.cotangents import cotangent_hint
from reference.checker.hints import non_finite_hints
from reference.checker.kinds import Kind
from reference.checker.runner import Call
from softmax_grad import bounds as error_bounds
from softmax_grad.bounds import LARGEST, SMALLEST_NORMAL
from softmax_grad.compare import Comparison, compare_bounded, worst
from softmax_grad.tolerances import tolerance

PASS, WARN, FAIL = "pass", "warn", "FAIL"
STABLE_FORM = (
    "compute the loss in log-sum-exp form, loss_i = log(sum_j exp(s_ij - m_i)) - (s_iy - m_i) with m_i = max_j s_ij "
    "(eq. 15), never as -log(p_iy)"
)

Expected = tuple[float, dict[str, np.ndarray]]


@dataclass
class CaseResult:
    """The verdict on one case: ``status`` pass, warn or FAIL, with the reasons."""

    name: str
    tier: str
    status: str
    messages: list[str] = field(default_factory=list)  # why it fails
    warnings: list[str] = field(default_factory=list)  # why it warns
    notes: list[str] = field(default_factory=list)  # what was accepted, or is worth knowing
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0
    traceback: str | None = None
    bound_ratio: float = 0.0  # the worst |error| / bound over the outputs ("W: 0.04 of its bound")
    ratios: dict[str, float] = field(default_factory=dict)  # output -> |error| / bound
    own_ratios: dict[str, float] = field(default_factory=dict)  # output -> your error / the framework's own
    # output -> why it passes only by the framework's own error, beyond its rounding bound (none under strict)
    within_own: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True unless the case failed (a warning passes; ``Report`` applies ``strict``)."""
        return self.status != FAIL


@dataclass(frozen=True)
class Context:
    """What the verdict needs besides the call: the kind, the oracle at other settings, the conventions."""

    kind: Kind
    dtype: np.dtype
    reduction: str
    reg_scale: float
    denominator: float  # what "mean" divides by: the kept rows' label weights
    oracle: Callable[..., Expected]  # oracle(reg=..., relu_gate_at_zero=...) at this case's inputs
    softcap: float | None = None
    bounds: Callable[..., dict[str, Any]] | None = None  # bounds(reg=...): each output's rounding-error bound
    own: Expected | None = None  # the framework's own plain autodiff on the same inputs (bfloat16, float16)
    rows: dict[str, np.ndarray] = field(default_factory=dict)  # per-row facts for the diagnoses (bounds.row_facts)
    strict: bool = False  # judge by the bound alone: the framework's own error is reported, never allowed
    own_name: str = ""  # whose own error ``own`` is ("torch", "jax")
    grad_output: Any = None  # the case's cotangent (eq. 54): the gradients expected are the VJP at it
    z_loss: float = 0.0  # eq. (21)'s z: its lse^2 may leave a low precision's range

    def bound(self, reg: float | None = None) -> dict[str, Any]:
        return self.bounds() if reg is None else self.bounds(reg=reg)

    def allowance(self, name: str) -> Any:
        """What the framework's own computation is off by at each entry of ``name`` (0 without one, or strict)."""
        if self.own is None or self.strict:
            return 0.0
        own_loss, own = self.own
        want_loss, want = self.oracle()
        if name == "loss":
            return np.nan_to_num(np.abs(np.asarray(own_loss) - want_loss), nan=0.0, posinf=0.0)
        return np.nan_to_num(np.abs(own[name] - want[name]))

    def judged(self, actual: Any, expected: Any, name: str, bound: Any | None = None, label: str | None = None):
        """``compare_bounded`` of one output against its bound (and the framework's own error)."""
        bound = self.bound()[name] if bound is None else bound
        return compare_bounded(actual, expected, bound, label=label or name, allowance=self.allowance(name))


# ----------------------------------------------------------------- reading the result
def _real(dtype: np.dtype) -> bool:
    """Integers and floats, ml_dtypes' bfloat16 (NumPy kind "V") among them."""
    return dtype.kind in "iuf" or dtype.name == "bfloat16"


def _read(value: Any, what: str, framework: ModuleType) -> tuple[np.ndarray | None, str | None]:
    try:
        arr = framework.to_numpy(value)
    except Exception as exc:  # a ragged list, an odd object: a verdict, not a crash
        return None, f"{what} could not be read as an array: {type(exc).__name__}: {exc}"
    if arr.dtype == object:
        return None, f"{what} could not be read as an array of numbers (got a {type(value).__name__})"
    return arr, None


def _gradients(
    kind: Kind, returned: Any, framework: ModuleType, named: bool = False
) -> tuple[dict[str, np.ndarray], list[str]]:
    """The gradient output named as the kind names it (``named``: it already is), and the problems found."""
    if kind.mapping or named:
        if not isinstance(returned, Mapping):
            keys = ", ".join(kind.gradient_names)
            return {}, [f"grads is a {type(returned).__name__}, expected a mapping with keys {keys}"]
        raw = dict(returned)
        problems = [f"grads is missing {key!r}" for key in kind.gradient_names if key not in raw]
    else:
        raw, problems = {kind.gradient_names[0]: returned}, []
    read = {}
    for name in kind.gradient_names:
        if name in raw:
            arr, problem = _read(raw[name], name, framework)
            if problem:
                problems.append(problem)
            else:
                read[name] = arr
    return read, problems


# ----------------------------------------------------------------- diagnoses
# An error above the bound but within this many bounds is rounding gone too far, never "a different function".
FEW_BOUNDS = 16.0


def _matches(ctx: Context, actual: np.ndarray, candidate: Any, expected: Any, name: str) -> bool:
    """Whether ``actual`` is within the bound of ``candidate``, the bound scaled to the candidate's size."""
    expected = np.asarray(expected, np.float64)
    candidate = np.asarray(candidate, np.float64)
    size, csize = float(np.max(np.abs(expected), initial=0.0)), float(np.max(np.abs(candidate), initial=0.0))
    scale = max(1.0, csize / size) if size > 0 else 1.0
    bound = scale * np.asarray(ctx.bound()[name]) + error_bounds.stored(error_bounds.precision(ctx.dtype), candidate)
    return compare_bounded(actual, candidate, bound, label="", allowance=scale * ctx.allowance(name)).ok


def _slips(ctx: Context, case: Case, name: str, want: Any, data: Any) -> list[tuple[str, Any, float | None]]:
    """(description, what the result would be, its penalty convention if it is one) for each slip this case
    can tell apart."""
    penalty = want - data
    N = ctx.denominator
    slips: list[tuple[str, Any, float | None]] = []
    if N > 1 and not np.isclose(N, 1.0):
        if ctx.reduction == "mean":
            slips.append((f"matches reduction='sum': N = {N:g} times the mean's; divide the data term by N", N * data))
            slips.append((f"is N = {N:g} times too small: divided by N twice?", data / N))
        elif ctx.reduction == "sum":
            slips.append((f"matches reduction='mean': 1/N of the sum's (N = {N:g}); drop the 1/N", data / N))
        slips = [(text, value + penalty, None) for text, value in slips]
    reg = case.inputs.get("reg", 0.0)
    if reg > 0 and (name == "loss" or name in ctx.kind.penalized):
        slips += [
            ("lacks the penalty term: it matches reg = 0", data, None),
            (_convention(ctx.reg_scale * 2), data + 2 * penalty, ctx.reg_scale * 2),
            (_convention(ctx.reg_scale / 2), data + 0.5 * penalty, ctx.reg_scale / 2),
        ]
    slips.append(("has the wrong sign: it is minus the right one (onehot - p instead of p - onehot?)", -want, None))
    if np.ndim(want) == 2 and want.shape[0] == want.shape[1] and not np.allclose(data, data.T):
        slips.append(("is transposed (its data term; square weights cannot tell by shape)", data.T + penalty, None))
    return slips


def _convention(scale: float) -> str:
    return (
        f"matches the reg_scale={float(scale)!r} convention (R = {scale:g} * reg * sum W^2), not the one asked for; "
        f"pass --reg-scale {scale:g} if that is yours"
    )


LARGE_LOGIT = 100.0


def diagnose(ctx: Context, case: Case, loss: np.ndarray | None, got: dict[str, np.ndarray], comparisons) -> list[str]:
    """Name the slip each wrong quantity matches; say when only the gradient is wrong."""
    want_loss, want = ctx.oracle()
    data_loss, data = ctx.oracle(reg=0.0) if ctx.kind.has_reg() else (want_loss, want)
    hints = []
    conventions: dict[str, float] = {}  # the penalty scale each quantity was built with, where a slip says
    wrong = {c.label for c in comparisons if not c.ok}
    quantities = [("loss", loss, want_loss, data_loss, False)] if loss is not None else []
    quantities += [(name, got.get(name), want[name], data[name], True) for name in want]
    for name, actual, expected, data_part, is_gradient in quantities:
        if name not in wrong or actual is None or np.shape(actual) != np.shape(expected):
            continue
        if not _real(actual.dtype) or not np.isfinite(np.asarray(actual, np.float64)).all():
            continue
        actual = np.asarray(actual, np.float64)
        comparison = next(c for c in comparisons if c.label == name)
        if comparison.ratio <= FEW_BOUNDS:  # rounding gone too far, not a slip: say where it sits
            hints.append(_beyond_rounding(ctx, name, actual, np.asarray(expected, np.float64), comparison.ratio))
            continue
        slip = cotangent_hint(ctx, name, actual)  # eq. (54): the VJP at another cotangent than the case's
        if slip:
            hints.append(f"{name} {slip}")
            continue
        for text, candidate, scale in _slips(ctx, case, name, np.asarray(expected, np.float64), data_part):
            if np.shape(candidate) == np.shape(actual) and _matches(ctx, actual, candidate, expected, name):
                hints.append(f"{name} {text}")
                if scale is not None:
                    conventions[name] = scale
                break
        else:
            expected = np.asarray(expected, np.float64)
            norm = float(np.sum(expected * expected))
            factor = float(np.sum(actual * expected)) / norm if norm > 0 else 0.0
            where = _concentrated(ctx, name, actual, expected)
            if factor and _matches(ctx, actual, factor * expected, expected, name):
                if f"{factor:.6g}" != "1":  # "1 times the right one" says nothing: rounding, named below
                    hints.append(f"{name} is {factor:.6g} times the right one")
            elif where:
                hints.append(f"{name}: {where}")
            elif is_gradient and "loss" not in wrong and loss is not None:
                hints.append(
                    f"the loss is right but {name} is not its gradient: it is the gradient of a different function"
                )
    if conventions:
        hints = _one_penalty(ctx, hints, conventions, wrong, loss is not None)
    hints += non_finite_hints(ctx.kind, case.inputs, got, wrong, ctx.dtype)
    errors = [c.max_rel_error for c in comparisons if not c.ok]
    if ctx.dtype == np.float64 and errors and all(0 < e <= tolerance(np.float32, "autodiff").rtol for e in errors):
        hints.append(
            f"the errors (max rel {max(errors):.1g}) are float32 rounding: the function computes in float32 "
            "(an explicit float32, or JAX with x64 off); check it with --dtype float32, or compute in float64"
        )
    return hints


def _one_penalty(
    ctx: Context, hints: list[str], conventions: dict[str, float], wrong: set[str], has_loss: bool
) -> list[str]:
    """When the loss and the penalized gradients were built with different penalties, say that, and no --reg-scale.

    A ``--reg-scale`` hint is right only when every quantity follows the one
    convention it names; otherwise taking it makes the other quantity wrong
    (the loss with ``reg * sum W^2``, dW with ``reg * W``: each scale "fixes" one).
    """
    right = {name: ctx.reg_scale for name in ("loss", *ctx.kind.penalized) if name not in wrong}
    if not has_loss:
        right.pop("loss", None)
    known = right | conventions
    scales = {name: known[name] for name in ("loss", *ctx.kind.penalized) if name in known}  # the loss first
    if len(set(scales.values())) < 2:
        return hints
    said = "; ".join(
        f"{'the loss has' if name == 'loss' else name + ' is the gradient of'} R = {scale:g} * reg * sum W^2"
        for name, scale in scales.items()
    )
    names = " and ".join("the loss" if name == "loss" else name for name in scales)
    kept = [hint for hint in hints if not any(hint.startswith(name + " ") for name in conventions)]
    return [
        f"{names} disagree on the penalty: {said}; make them one convention (no --reg-scale makes both right; "
        f"{ctx.reg_scale:g} was asked for)",
        *kept,
    ]


def _excess(
    ctx: Context, name: str, actual: np.ndarray, expected: np.ndarray, allowed_own: bool = True
) -> np.ndarray | None:
    """Where ``name`` lies beyond its allowance (``allowed_own``: with the framework's own error, else the bound
    alone), when it has one row per sample (dscores, X); else None."""
    if name not in ("dscores", "X") or actual.ndim != 2 or "large" not in ctx.rows:
        return None
    if actual.shape[0] != len(ctx.rows["large"]):
        return None
    own = ctx.allowance(name) if allowed_own else 0.0
    allowed = error_bounds.MULTIPLE * (np.asarray(ctx.bound()[name]) + own)
    return np.abs(actual - expected) > allowed


def _concentrated(ctx: Context, name: str, actual: np.ndarray, expected: np.ndarray, allowed_own: bool = True) -> str:
    """Where the error sits when that names its cause: the label entries, or rows of large logits."""
    excess = _excess(ctx, name, actual, expected, allowed_own)
    if excess is None or not excess.any():
        return ""
    if name == "X" and not (excess.any(axis=1) & ~ctx.rows["certain"]).any():
        return (
            "the error lies only in rows certain of their label (p_y >= 0.98), whose dS is led by the label entry "
            "p_y - 1: computed by cancellation after p was rounded to the dtype"
        )
    if name == "dscores":
        labels = np.zeros_like(excess)
        labels[np.arange(len(excess)), ctx.rows["labels"]] = True
        if not (excess & ~labels).any():
            rows = excess.any(axis=1)
            certain = "rows certain of their label (p_y >= 0.98)" if not (rows & ~ctx.rows["certain"]).any() else "rows"
            return (
                f"the error lies only in the label entries p_y - 1, of {certain}: p_y - 1 by cancellation, "
                "after p was rounded to the dtype; compute it as -(sum over j != y of p_j), or subtract in the "
                "accumulation dtype (float32) and round once"
            )
        led = _led_by_certain_labels(ctx, name, actual, expected, labels)
        if led:
            return led
    rows = excess.any(axis=1)
    if rows.sum() < len(rows) and not (rows & ~ctx.rows["large"]).any():
        return (
            f"the error lies only in rows of large logits (|logit| >= {LARGE_LOGIT:g}: rows "
            f"{np.flatnonzero(rows)[:6].tolist()}): the logits lose precision before the softmax there; "
            "shift each row by its own max before exponentiating, and keep the logits in the dtype they came in"
        )
    return ""


# The label entries of certain rows "lead" the error when their worst ratio is this many times the worst elsewhere.
LEADS = 4.0


def _led_by_certain_labels(
    ctx: Context, name: str, actual: np.ndarray, expected: np.ndarray, labels: np.ndarray
) -> str:
    """When the error is worst, by far, at the label entries of rows certain of their label: say so.

    A computation that rounds its log-probabilities to a narrow dtype (torch's
    bfloat16 cross-entropy on CPU) is off everywhere in those rows, but by far
    the most at ``p_y - 1``, computed by cancellation.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.nan_to_num(np.abs(actual - expected) / np.asarray(ctx.bound()[name]), posinf=np.inf)
    at_labels = labels & ctx.rows["certain"][:, None]
    if not at_labels.any() or (~at_labels).sum() == 0:
        return ""
    there, elsewhere = float(ratios[at_labels].max()), float(ratios[~at_labels].max())
    if there <= error_bounds.MULTIPLE or there < LEADS * elsewhere:
        return ""
    return (
        f"the error lies mostly in the label entries p_y - 1 of rows certain of their label (p_y >= 0.98; "
        f"{there:.3g} of their bound there, at most {elsewhere:.3g} elsewhere): p_y - 1 by cancellation, after "
        "p (or log p) was rounded to the dtype"
    )


def _beyond_rounding(ctx: Context, name: str, actual: np.ndarray, expected: np.ndarray, ratio: float) -> str:
    """The hint for an error a few bounds wide: more than the dtype's rounding explains, and where it sits."""
    where = _concentrated(ctx, name, actual, expected)
    return (
        f"{name}: the error is {ratio:.3g} of its rounding-error bound in {ctx.dtype.name}: "
        "more than rounding explains, but too small to be a different formula"
        + (f"; {where}" if where else "; look for a sum accumulated in a narrower type, or an intermediate rounded")
    )


# ----------------------------------------------------------------- the verdict
def _loss_of(returned: Any, framework: ModuleType, rows: int | None = None) -> tuple[Any, list[str], list[str]]:
    """The loss as a 0-d array (``rows``: the (N,) per-row losses of reduction "none"), problems, notes."""
    arr, problem = _read(returned, "the loss", framework)
    if problem:
        return None, [problem], []
    if rows is not None:
        if arr.shape != (rows,) or not _real(arr.dtype):
            return None, [f"the loss has shape {arr.shape} and dtype {arr.dtype}; reduction='none' expects the "
                          f"({rows},) per-row losses"], []  # fmt: skip
        return arr, [], []
    if arr.size != 1:
        return None, [f"the loss has shape {arr.shape}; expected one number"], []
    if not _real(arr.dtype):
        return None, [f"the loss has dtype {arr.dtype}; expected a real number"], []
    notes = [f"the loss came as an array of shape {arr.shape}; its one value was taken"] if arr.ndim else []
    return arr.reshape(()), [], notes


def _label_underflow(ctx: Context) -> float | None:
    """The smallest label log-probability of the case if it lies below the dtype's range, else None.

    There a correct ``-log(p_y)`` form is inf in this dtype: on any case, a
    non-finite loss beside right gradients is then a warning, not a failure.
    """
    log_p = ctx.rows.get("log_p_y")
    if log_p is None or not len(log_p):
        return None
    lowest = float(np.min(log_p))
    return lowest if lowest < np.log(SMALLEST_NORMAL[ctx.dtype.name]) else None


def _own_ratios(ctx: Context, loss: np.ndarray | None, got: dict[str, np.ndarray]) -> dict[str, float]:
    """Per output, your largest error over the framework's own largest error on the same case (Cut Cross-Entropy's)."""
    want_loss, want = ctx.oracle()
    own_loss, own = ctx.own
    pairs = [(n, got[n], want[n], own[n]) for n in want if n in got and np.shape(got[n]) == np.shape(want[n])]
    if loss is not None and np.isfinite(want_loss).all() and np.shape(loss) == np.shape(want_loss):
        pairs.append(("loss", loss, want_loss, own_loss))
    ratios = {}
    for name, actual, expected, theirs in pairs:
        try:
            mine = float(np.max(np.abs(np.asarray(actual, np.float64) - expected), initial=0.0))
        except (TypeError, ValueError):
            continue
        their = float(np.max(np.abs(np.asarray(theirs, np.float64) - expected), initial=0.0))
        ratios[name] = mine / their if their > 0 else (0.0 if mine == 0 else float("inf"))
    return ratios


def _within_own(
    ctx: Context, passed: list[Comparison], loss: np.ndarray | None, got: dict[str, np.ndarray]
) -> dict[str, str]:
    """Each output that passes only by the framework's own error: beyond MULTIPLE x its bound (eq. 44), within
    the allowance beside it. Said plainly, with where the excess sits; ``strict`` fails these instead."""
    if ctx.own is None or ctx.strict:
        return {}
    _, want = ctx.oracle()
    own = _own_ratios(ctx, loss, got)
    said = {}
    whose = ctx.own_name or "the framework"
    for c in passed:
        if not c.ok or not c.ratio > error_bounds.MULTIPLE:
            continue
        text = (
            f"{c.label}: beyond its rounding bound (ratio {c.ratio:.3g}) but within {whose}'s "
            f"own {ctx.dtype.name} error (ratio {own.get(c.label, float('nan')):.3g})"
        )
        if c.label in got:
            actual = np.asarray(got[c.label], np.float64)
            where = _concentrated(ctx, c.label, actual, np.asarray(want[c.label], np.float64), allowed_own=False)
            text += f"; the excess lies {where.removeprefix('the error lies ')}" if where else ""
        said[c.label] = text
    return said


def _penalty_overflow(ctx: Context) -> float | None:
    """The largest ``lse_i^2`` of the case if the z-loss (eq. 21) needs it and it lies past the dtype's range.

    There a correct ``z * lse_i ** 2`` is inf in this dtype (float16's range ends at 65504, so at lse = 256):
    on any case, a non-finite loss beside right gradients is then a warning, not a failure.
    """
    lse = ctx.rows.get("lse")
    if not ctx.z_loss or lse is None or not len(lse):
        return None
    largest = float(np.max(lse**2))
    return largest if largest > LARGEST[ctx.dtype.name] else None


def _non_finite_cause(ctx: Context, case: Case, loss: np.ndarray, underflow: float | None,
                      overflow: float | None) -> str:  # fmt: skip
    """Why a correct loss is not finite in this dtype, and the form that keeps it finite."""
    name = ctx.dtype.name
    if overflow is not None:
        return (
            f"the z-loss needs lse_i^2 up to {overflow:.3g}, past {name}'s largest number "
            f"({LARGEST[name]:.6g}), so z * lse_i^2 is inf when it is formed in {name} (eq. 21); form it as "
            "(sqrt(z) * lse_i)^2, or in float32, and round the loss once"
        )
    if np.isinf(loss).any() and (underflow is None or case.tier == ROBUSTNESS):
        cause = (
            "a true class's probability underflows to 0 here (logits about 1000 apart), so -log(p_y) is inf "
            "even after the max shift"
        )
    elif np.isinf(loss).any():
        cause = (
            f"a true class's probability underflows to 0 in {name} here (log p_y = {underflow:.4g}, below the log "
            f"of its smallest normal number, {np.log(SMALLEST_NORMAL[name]):.4g}), so -log(p_y) is inf even after "
            "the max shift"
        )
    else:
        cause = "an inf - inf or 0 * inf on the way (exp overflowing, or 0 * log 0)"
    return f"{cause}; {STABLE_FORM}"


def judge(ctx: Context, case: Case, call: Call, framework: ModuleType) -> CaseResult:
    """The verdict on ``case`` from what ``call`` returned (``ctx.oracle()`` is the expected result)."""
    notes = list(case.notes)
    if call.printed:
        lines = call.printed.strip().splitlines() or [""]
        notes.append(f"the function printed {len(lines)} line(s), first: {lines[0][:100]!r}")
    if call.warned:
        notes.append("warnings raised inside the function: " + "; ".join(call.warned[:3]))
    result = CaseResult(case.name, case.tier, FAIL, list(call.mutated), [], notes, np.nan, np.nan, call.traceback)
    if call.error:
        result.messages.append(call.error)
        return result
    if not (isinstance(call.result, tuple) and len(call.result) == 2):
        result.messages.append(f"returned {type(call.result).__name__}, expected {ctx.kind.signature}")
        return result
    if call.by_autodiff:
        notes.append(f"the loss came alone; its gradients are {framework.NAME}'s autodiff of it")
    rows = len(case.labels) if ctx.reduction == "none" else None
    loss, problems, loss_notes = _loss_of(call.result[0], framework, rows)
    got, grad_problems = _gradients(ctx.kind, call.result[1], framework, named=call.by_autodiff)
    result.messages += problems + grad_problems
    result.notes += loss_notes
    want_loss, want = ctx.oracle()
    comparisons: list[Comparison] = [ctx.judged(got[name], want[name], name) for name in want if name in got]
    for name, value in got.items():
        if value.dtype != ctx.dtype and _real(value.dtype) and value.dtype.kind not in "iu":
            result.notes.append(f"{name} came back as {value.dtype} for {ctx.dtype.name} inputs")
    loss_comparison = None
    if loss is not None:
        if np.ndim(want_loss) == 0 and np.isnan(want_loss):  # the mean over no kept row: NaN as torch gives
            if not np.isnan(loss):
                result.warnings.append(f"the loss is {float(loss)!r} where no row is kept; the mean of nothing is NaN")
        else:
            loss_comparison = ctx.judged(loss, want_loss, "loss")
    every = ([loss_comparison] if loss_comparison is not None else []) + comparisons  # a wrong loss is falsy
    result.max_abs_error = worst(c.max_abs_error for c in every)
    result.max_rel_error = worst(c.max_rel_error for c in every)
    result.ratios = {c.label: c.ratio for c in every}
    result.bound_ratio = worst(c.ratio for c in every)
    if ctx.own is not None:
        result.own_ratios = _own_ratios(ctx, loss, got)
    gradients_right = all(comparisons) and not grad_problems
    loss_wrong = loss_comparison is not None and not loss_comparison.ok
    if case.relu_zeros and not gradients_right and not grad_problems:
        _, other = ctx.oracle(relu_gate_at_zero=True)
        if all(ctx.judged(got[n], other[n], n).ok for n in other if n in got):
            comparisons = [ctx.judged(got[n], other[n], n) for n in other if n in got]
            gradients_right = True
            result.notes.append("relu'(0) = 1 at the exact zeros of Z1: the other valid subgradient, accepted")
    underflow, overflow = _label_underflow(ctx), _penalty_overflow(ctx)
    if (
        (case.tier == ROBUSTNESS or underflow is not None or overflow is not None)
        and gradients_right
        and loss_wrong
        and loss is not None
        and not np.isfinite(loss).all()
        and not result.messages
    ):
        names = ", ".join(c.label for c in comparisons)
        verb = "match" if len(comparisons) > 1 else "matches"
        error = worst(c.max_rel_error for c in comparisons)
        cause = _non_finite_cause(ctx, case, loss, underflow, overflow)
        said = float(loss) if np.ndim(loss) == 0 else "not finite"
        result.warnings.append(
            f"the loss is {said} but the gradient is right ({names} {verb} to {error:.0e}, relative): "
            f"{cause}"
        )
        result.status = WARN
        return result
    failed = [c for c in ([loss_comparison] if loss_wrong else []) + comparisons if not c.ok]
    result.messages += [c.message for c in failed]
    if failed:
        result.messages += diagnose(ctx, case, loss, got, failed)
    if result.messages:
        return result
    result.within_own = _within_own(ctx, every, loss, got)
    result.status = WARN if result.warnings else PASS
    return result
