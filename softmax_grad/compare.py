"""One comparison helper: shape, then dtype, then finiteness, then values, and says which failed."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from softmax_grad.bounds import MULTIPLE
from softmax_grad.tolerances import Tolerance


@dataclass(frozen=True)
class Comparison:
    """The verdict on one computed quantity against its oracle."""

    label: str
    ok: bool
    max_abs_error: float
    max_rel_error: float  # max |actual - expected| / max |expected|, see compare()
    message: str
    ratio: float = float("nan")  # max |actual - expected| / bound, when judged by a rounding-error bound

    def __bool__(self) -> bool:
        return self.ok


def worst(errors: Iterable[float]) -> float:
    """The largest error, or NaN if any is NaN: a shape, dtype or finiteness failure must not hide behind max().

    >>> worst([1e-3, float("nan"), 2e-3]), worst([1e-3, 2e-3])
    (nan, 0.002)
    """
    values = list(errors)
    return float("nan") if any(np.isnan(v) for v in values) else max(values, default=0.0)


def compare(
    actual: object,
    expected: object,
    tol: Tolerance,
    *,
    label: str,
    dtype: np.dtype | None = None,
    gradient: bool = False,
) -> Comparison:
    """Compare ``actual`` with ``expected`` under ``tol`` (see ``softmax_grad.tolerances``).

    The reported relative error is normwise: ``max |a - e| / max |e|``.
    ``label`` names what is compared (variant, quantity, shape) and opens the
    message. An expected NaN (the loss of a "mean" over no rows, eq. 20) must
    be a NaN in ``actual`` at the same place, and nowhere else. With
    ``dtype`` given, ``actual`` must have exactly that dtype.
    A ``gradient`` that does not vanish is held to ``tol.gradient_floor``
    instead of ``tol.floor``, so that entries small because of ``1/N`` are
    judged relative to the gradient's own scale.

    >>> from softmax_grad.tolerances import tolerance
    >>> tol = tolerance("float64", "autodiff")
    >>> compare(np.array([1.0, 2.0]), np.array([1.0, 2.0]), tol, label="dS").ok
    True
    >>> print(compare(np.array([1.0, 2.002]), np.array([1.0, 2.0]), tol, label="dS").message)
    dS: values differ at index (1,): actual 2.002, expected 2 (max abs error 0.002, max rel error 0.001)
    >>> compare(float("nan"), float("nan"), tol, label="loss").ok, compare(0.0, float("nan"), tol, label="loss").ok
    (True, False)
    """
    nan = float("nan")
    a = np.asarray(actual)
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        return Comparison(label, False, nan, nan, f"{label}: shape {a.shape}, expected {e.shape}")
    if dtype is not None and a.dtype != dtype:
        return Comparison(label, False, nan, nan, f"{label}: dtype {a.dtype}, expected {np.dtype(dtype)}")
    if a.dtype.kind not in "iuf":
        return Comparison(label, False, nan, nan, f"{label}: dtype {a.dtype} is not real")
    a = a.astype(np.float64)
    undefined = np.isnan(e)
    if undefined.any():  # an oracle's NaN is a convention (a "mean" over no rows, eq. 20): matched exactly
        mismatch = np.isnan(a) != undefined
        if mismatch.any():
            index = tuple(int(i) for i in np.argwhere(mismatch)[0])
            return Comparison(label, False, nan, nan, f"{label}: actual {a[index]} at index {index}, expected nan")
        a, e = np.where(undefined, 0.0, a), np.where(undefined, 0.0, e)
    if not np.isfinite(a).all():
        index = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
        return Comparison(label, False, nan, nan, f"{label}: non-finite value {a[index]} at index {index}")
    error = np.abs(a - e)
    scale = float(np.max(np.abs(e), initial=0.0))
    max_abs = float(np.max(error, initial=0.0))
    # Relative to the array's largest entry; a scale below the oracle's noise
    # (an all-zero gradient seen through finite differences) counts as that noise.
    floor = tol.gradient_floor if gradient and scale > 0 else tol.floor
    max_rel = max_abs / max(scale, floor / tol.rtol)
    allowed = tol.rtol * np.abs(e) + tol.atol * scale + floor
    excess = error - allowed
    if a.size and excess.max() > 0:
        index = np.unravel_index(int(np.argmax(excess)), a.shape)
        where = tuple(int(i) for i in index)
        message = (
            f"{label}: values differ at index {where}: actual {a[index]:.16g}, expected {e[index]:.16g} "
            f"(max abs error {max_abs:.3g}, max rel error {max_rel:.3g})"
        )
        return Comparison(label, False, max_abs, max_rel, message)
    return Comparison(label, True, max_abs, max_rel, f"{label}: ok (max abs error {max_abs:.3g})")


def _where(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0])


def compare_bounded(
    actual: object,
    expected: object,
    bound: object,
    *,
    label: str,
    dtype: np.dtype | None = None,
    allowance: object = 0.0,
    multiple: float = MULTIPLE,
) -> Comparison:
    """Compare ``actual`` with ``expected`` entry by entry against a rounding-error ``bound`` (softmax_grad.bounds).

    It passes when ``|actual - expected| <= multiple * (bound + allowance)``
    everywhere; ``allowance`` is what else a correct result may carry there
    (the framework's own low-precision error). The ``ratio`` reported is
    ``max |actual - expected| / bound``: "W: 0.04 of its bound". Shape, dtype,
    NaN and finiteness are checked first, as ``compare`` does.

    >>> bound, actual = np.array([1e-3, 1e-3]), np.array([1.0, 2.0])
    >>> print(compare_bounded(actual, np.array([1.0, 2.001]), bound, label="dS").message)
    dS: ok, 1 of its bound (max abs error 0.001)
    >>> print(compare_bounded(actual, np.array([1.0, 2.01]), bound, label="dS").message)  # doctest: +ELLIPSIS
    dS: values differ at index (1,): actual 2, expected 2.01 (10 of its bound; max abs error 0.01, ...)
    """
    nan = float("nan")
    a = np.asarray(actual)
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        return Comparison(label, False, nan, nan, f"{label}: shape {a.shape}, expected {e.shape}")
    if dtype is not None and a.dtype != dtype:
        return Comparison(label, False, nan, nan, f"{label}: dtype {a.dtype}, expected {np.dtype(dtype)}")
    try:
        a = a.astype(np.float64)  # ml_dtypes' bfloat16 is kind "V": read it by value
    except (TypeError, ValueError):
        return Comparison(label, False, nan, nan, f"{label}: dtype {a.dtype} is not real")
    if np.asarray(actual).dtype.kind not in "iufV" or np.iscomplexobj(actual):
        return Comparison(label, False, nan, nan, f"{label}: dtype {np.asarray(actual).dtype} is not real")
    undefined = np.isnan(e)
    if undefined.any():  # an oracle's NaN is a convention (a "mean" over no rows, eq. 20): matched exactly
        mismatch = np.isnan(a) != undefined
        if mismatch.any():
            index = _where(mismatch)
            return Comparison(label, False, nan, nan, f"{label}: actual {a[index]} at index {index}, expected nan")
        a, e = np.where(undefined, 0.0, a), np.where(undefined, 0.0, e)
    if not np.isfinite(a).all():
        index = _where(~np.isfinite(a))
        return Comparison(label, False, nan, nan, f"{label}: non-finite value {a[index]} at index {index}")
    error = np.abs(a - e)
    bound = np.broadcast_to(np.nan_to_num(np.asarray(bound, np.float64)), e.shape)
    allowed = multiple * (bound + np.broadcast_to(np.asarray(allowance, np.float64), e.shape))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ratios = np.where(error == 0, 0.0, error / bound)
    worst_ratio = float(np.max(ratios, initial=0.0))
    scale = float(np.max(np.abs(e), initial=0.0))
    max_abs = float(np.max(error, initial=0.0))
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else math.inf)
    excess = error - allowed
    if a.size and excess.max() > 0:
        index = np.unravel_index(int(np.argmax(np.where(excess > 0, ratios, -1.0))), a.shape)
        where = tuple(int(i) for i in index)
        message = (
            f"{label}: values differ at index {where}: actual {a[index]:.16g}, expected {e[index]:.16g} "
            f"({ratios[index]:.3g} of its bound; max abs error {max_abs:.3g}, max rel error {max_rel:.3g})"
        )
        return Comparison(label, False, max_abs, max_rel, message, worst_ratio)
    return Comparison(
        label, True, max_abs, max_rel, f"{label}: ok, {worst_ratio:.2g} of its bound (max abs error {max_abs:.3g})",
        worst_ratio,
    )  # fmt: skip
