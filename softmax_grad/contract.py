"""The public contract that every implementation shares (README, "Calling a variant": bad input).

Each public function of every manual variant and of ``reference`` is wrapped by
one of the ``*_entry`` decorators below. The decorator validates the arguments
once, at the door, hands the wrapped implementation clean arrays of the
computing dtype, and turns its results into the interface's types: the loss a
Python float, every gradient a fresh NumPy array of the input's floating dtype.

One validation path means every implementation rejects the same bad input with
the same message, and the math modules stay free of bookkeeping.

Dtype policy: the computing dtype is float32 when every floating-point input is
float32, and float64 otherwise (integer scores become float64).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

REDUCTIONS = ("mean", "sum")
LOSS_REDUCTIONS = ("mean", "sum", "none")  # softmax_loss and linear_cross_entropy also return per-row losses
PARAM_NAMES = ("W1", "b1", "W2", "b2")


# --------------------------------------------------------------------- checks
def _as_array(value: Any, name: str) -> np.ndarray:
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as exc:  # ragged nested lists, odd objects
        raise ValueError(f"{name} could not be read as an array: {exc}") from None


def check_array(value: Any, name: str, axes: tuple[str, ...]) -> np.ndarray:
    """Return ``value`` as a finite, non-empty real array whose axes are ``axes``."""
    return _checked(value, name, axes, masked=False)[0]


def check_masked_array(value: Any, name: str, axes: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray | None]:
    """``check_array`` that also takes ``-inf``, a masked class (derivation eq. 56); ``+inf`` and NaN stay errors.

    Returns the array and its ``-inf`` entries as a boolean array, or None when
    there are none (then one BLAS pass was all the checking cost). Every row
    must keep a class: with every class masked the softmax has no normaliser.

    >>> check_masked_array([[0.0, -np.inf], [1.0, 2.0]], "scores", ("N", "C"))[1].tolist()
    [[False, True], [False, False]]
    >>> check_masked_array([[1.0, 2.0]], "scores", ("N", "C"))[1] is None
    True
    """
    arr, finite = _checked(value, name, axes, masked=True)
    if finite:
        return arr, None
    mask = np.isneginf(arr)
    if not mask.any():
        return arr, None
    every = mask.all(axis=-1)
    if every.any():
        where = f"row {int(np.argmax(every))} of {name}" if arr.ndim == 2 else name
        raise ValueError(f"{where} is -inf at every class: with every class masked the softmax is undefined")
    return arr, mask


def _checked(value: Any, name: str, axes: tuple[str, ...], *, masked: bool) -> tuple[np.ndarray, bool]:
    """``value`` checked as ``check_array`` says (``-inf`` allowed when ``masked``), and whether it is all finite."""
    arr = _as_array(value, name)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != len(axes):
        layout = "(" + ", ".join(axes) + ("," if len(axes) == 1 else "") + ")"
        raise ValueError(
            f"{name} must be {len(axes)}-D with shape {layout}, got {arr.ndim}-D array of shape {arr.shape}"
        )
    if arr.size == 0:
        axis = axes[arr.shape.index(0)]
        raise ValueError(f"{name} must not be empty: {axis} = 0 in shape {arr.shape}")
    if arr.dtype.kind == "f" and arr.dtype.itemsize > 8:  # long double: what float64 cannot hold is an error
        with np.errstate(over="ignore"):
            narrowed = arr.astype(np.float64)
        lost = np.isfinite(arr) & ~np.isfinite(narrowed)
        if lost.any():
            index = tuple(int(i) for i in np.argwhere(lost)[0])
            raise ValueError(f"{name} holds {arr[index]!s} at index {index}, beyond float64's range (about 1.8e308)")
    if arr.dtype.kind != "f" or _surely_finite(arr):
        return arr, True
    bad = (np.isnan(arr) | np.isposinf(arr)) if masked else ~np.isfinite(arr)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        allowed = "finite or -inf (a masked class)" if masked else "finite"
        raise ValueError(f"{name} holds {arr[index]} at index {index}; values must be {allowed}")
    return arr, False


def check_masked_targets(mask: np.ndarray | None, targets: np.ndarray, options: LossOptions, name: str) -> None:
    """Reject what would put loss on a masked class: a label there, soft-target mass there, label smoothing.

    ``mask`` is (N, C) for scores or (V,) for a bias (every row masked alike); ``name`` names its array.
    A label on a masked class would make the loss +inf; smoothing puts ``e/C`` on every class, masked ones too.
    """
    if mask is None:
        return
    if options.label_smoothing > 0:
        index = tuple(int(i) for i in np.argwhere(mask)[0])
        raise ValueError(
            f"label_smoothing={options.label_smoothing} puts e/C on every class, but {name}{list(index)} = -inf "
            "masks a class: the smoothed loss would be +inf; smooth over the classes that exist, or pass 0"
        )
    if targets.ndim == 2:
        on_masked = (targets > 0) & mask
        if on_masked.any():
            i, j = (int(k) for k in np.argwhere(on_masked)[0])
            raise ValueError(
                f"y[{i}, {j}] = {targets[i, j]} puts target mass on class {j}, which is masked ({name}[{i}, {j}] = "
                "-inf): the loss would be +inf"
            )
        return
    kept = targets != options.ignore_index if options.ignore_index is not None else np.ones(targets.shape, bool)
    labels = np.where(kept, targets, 0)
    on_masked = kept & (mask[labels] if mask.ndim == 1 else mask[np.arange(labels.shape[0]), labels])
    if on_masked.any():
        i = int(np.argmax(on_masked))
        where = f"{name}[{targets[i]}]" if mask.ndim == 1 else f"{name}[{i}, {targets[i]}]"
        raise ValueError(
            f"y[{i}] = {targets[i]} is a masked class ({where} = -inf): a label must be a class that exists, "
            "and its loss would be +inf"
        )


def _surely_finite(arr: np.ndarray) -> bool:
    """True only if every entry is finite; one BLAS pass, no temporary the size of ``arr``.

    A NaN or an infinity anywhere makes the sum of the products with a ones vector
    non-finite; a finite overflow of the sum gives a false alarm, which the exact
    check clears.
    """
    with np.errstate(all="ignore"):  # inf - inf inside the sum is the case being looked for
        return math.isfinite(float((arr @ ones(arr.shape[-1], arr.dtype)).sum()))


@functools.lru_cache(maxsize=32)
def ones(n: int, dtype: np.dtype) -> np.ndarray:
    """A read-only ones vector, kept between calls: row sums by BLAS (``A @ 1``) in the checks and the variants."""
    ones = np.ones(n, dtype)
    ones.flags.writeable = False
    return ones


def check_labels(y: Any, n: int, c: int, ignore_index: int | None = None) -> np.ndarray:
    """Return ``y`` as ``intp`` labels, after checking they are N integers in ``[0, C)``.

    A label equal to ``ignore_index`` is exempt from the range check (it may be
    the usual -100); every other label is checked.
    """
    arr = _as_array(y, "y")
    if arr.dtype.kind not in "iu":
        raise TypeError(
            f"y must hold integer class labels (N,) or floating soft targets (N, C), "
            f"got dtype {arr.dtype} and shape {arr.shape}"
        )
    if arr.ndim != 1:
        raise ValueError(f"y must be 1-D with shape (N,), got {arr.ndim}-D array of shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"y has {arr.shape[0]} labels but there are N = {n} samples")
    # Compare before any cast or indexing, so that -1 is an error, not class C-1. Seen as
    # unsigned, a negative label is huge: one max() then checks both ends of [0, C).
    unsigned = arr.view(arr.dtype.str.replace("i", "u"))
    if unsigned.max() >= c:
        bad = (arr < 0) | (arr >= c)
        if ignore_index is not None:
            bad &= arr != ignore_index
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"y[{i}] = {arr[i]} is out of range: labels must lie in [0, {c}) for C = {c}")
    return arr.astype(np.intp, copy=False)


def check_targets(y: Any, n: int, c: int, ignore_index: int | None = None) -> np.ndarray:
    """Return integer labels (N,), as ``check_labels`` does, or soft targets (N, C) checked finite and >= 0."""
    arr = _as_array(y, "y")
    if arr.dtype.kind != "f" or arr.ndim != 2:
        return check_labels(arr, n, c, ignore_index)
    if arr.shape != (n, c):
        raise ValueError(f"y holds soft targets of shape {arr.shape}, expected (N, C) = {(n, c)} from the scores")
    if ignore_index is not None:
        raise ValueError(f"ignore_index={ignore_index} applies to integer labels only; y holds soft targets")
    targets = check_array(arr, "y", ("N", "C"))
    if (targets < 0).any():
        index = tuple(int(i) for i in np.argwhere(targets < 0)[0])
        raise ValueError(f"y{list(index)} = {targets[index]} is negative; soft targets must be >= 0")
    return targets


def check_reduction(value: Any, allowed: tuple[str, ...] = REDUCTIONS) -> str:
    if not isinstance(value, str) or value not in allowed:
        choices = ", ".join(repr(r) for r in allowed[:-1]) + f" or {allowed[-1]!r}"
        raise ValueError(f"reduction must be {choices}, got {value!r}")
    return value


def check_cotangent_shape(shape: tuple[int, ...], reduction: str, n: int) -> None:
    """The shape ``grad_output`` must have: (N,) for "none", a scalar otherwise. Reads no values (device arrays too)."""
    if reduction == "none" and tuple(shape) != (n,):
        raise ValueError(
            f"grad_output must have shape (N,) = ({n},) for reduction='none', one cotangent per row's loss; "
            f"got shape {tuple(shape)}"
        )
    if reduction != "none" and len(shape) != 0:
        raise ValueError(
            f"grad_output must be a scalar for reduction={reduction!r}, whose loss is a scalar; got shape "
            f"{tuple(shape)} (per-row cotangents need reduction='none')"
        )


def check_grad_output(value: Any, reduction: str, n: int, dtype: np.dtype) -> float | np.ndarray:
    """The loss's cotangent: a float for "mean" and "sum" (default 1), an (N,) array of ``dtype`` for "none" (ones).

    The gradient returned is the vector-Jacobian product ``grad_output^T dL/dinputs`` (derivation eq. 54):
    ``grad_output`` scales each row's factor of eq. (24) and nothing else.

    >>> check_grad_output(None, "mean", 3, np.dtype(np.float32)), check_grad_output(2, "sum", 3, np.dtype(np.float32))
    (1.0, 2.0)
    >>> check_grad_output([1, 0, -2], "none", 3, np.dtype(np.float32))
    array([ 1.,  0., -2.], dtype=float32)
    """
    if value is None:
        return np.ones(n, dtype) if reduction == "none" else 1.0
    arr = _as_array(value, "grad_output")
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"grad_output must hold real numbers, got dtype {arr.dtype}")
    check_cotangent_shape(arr.shape, reduction, n)
    with np.errstate(over="ignore"):
        cast = arr.astype(dtype)
    bad = ~np.isfinite(cast)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        what = f"grad_output[{index[0]}]" if index else "grad_output"
        limit = f" ({dtype.name}, the computing dtype, ends near {float(np.finfo(dtype).max):.3g})"
        raise ValueError(f"{what} = {arr[index]} must be finite{limit if np.isfinite(arr[index]) else ''}")
    return cast if reduction == "none" else float(cast)


def check_reg(value: Any) -> float:
    """Return the regularization strength as a float, after checking it is finite and >= 0."""
    arr = np.asarray(value)
    if arr.ndim != 0 or arr.dtype.kind not in "iuf":
        raise TypeError(f"reg must be a real number, got {value!r}")
    strength = float(arr)
    if not np.isfinite(strength) or strength < 0:
        raise ValueError(f"reg must be finite and >= 0, got {strength}")
    return strength


def check_flag(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _real_scalar(value: Any, name: str) -> float:
    """``value`` as a float, after checking it is one real number (not a bool, an array or a string)."""
    arr = np.asarray(value) if not isinstance(value, (bool, np.bool_, str)) else None
    if arr is None or arr.ndim != 0 or arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a real number, got {value!r}")
    return float(arr)


@dataclass(frozen=True)
class LossOptions:
    """The loss options of README, "Loss options", validated once (derivation eqs. 17-24).

    ``weight`` is None or a (C,) array of the computing dtype; the defaults
    (``LossOptions()``) are the textbook loss of eqs. (4), (15).
    """

    weight: np.ndarray | None = None
    ignore_index: int | None = None
    label_smoothing: float = 0.0
    z_loss: float = 0.0
    softcap: float | None = None

    @property
    def plain(self) -> bool:
        """True when no option changes the textbook loss."""
        return (
            self.weight is None
            and self.ignore_index is None
            and self.label_smoothing == 0.0
            and self.z_loss == 0.0
            and self.softcap is None
        )

    def astype(self, dtype: np.dtype, *, mean_of_labels: bool = False) -> LossOptions:
        """The options with the class weights in ``dtype``.

        For a "mean" over integer labels the weights are first scaled, in
        float64, so that the largest lies in [0.5, 1): eq. (20)'s mean divides
        by the kept rows' summed weight and does not change when every weight
        is scaled, and a tiny uniform weight (1e-50 beside float32 scores) then
        no longer rounds to 0, which made the mean 0/0. The scale is a power of
        2, so ordinary weights give the same results to the bit.

        >>> LossOptions(weight=np.array([1.0, 3.0])).astype(np.float32, mean_of_labels=True).weight
        array([0.25, 0.75], dtype=float32)
        >>> LossOptions(weight=np.array([1e-50, 3e-50])).astype(np.float32, mean_of_labels=True).weight.min() > 0
        np.True_
        """
        if self.weight is None:
            return self
        weight = self.weight
        if mean_of_labels and weight.max() > 0:
            weight = np.ldexp(weight.astype(np.float64), -np.frexp(weight.max())[1])
        return replace(self, weight=weight.astype(dtype, copy=False))


TEXTBOOK = LossOptions()  # no option set: the loss of eqs. (4), (15)


def check_options(
    c: int,
    *,
    weight: Any = None,
    ignore_index: Any = None,
    label_smoothing: Any = 0.0,
    z_loss: Any = 0.0,
    softcap: Any = None,
) -> LossOptions:
    """Validate the loss options for ``C = c`` classes into one ``LossOptions``."""
    if weight is None and ignore_index is None and softcap is None and _zero(label_smoothing) and _zero(z_loss):
        return TEXTBOOK
    if weight is not None:
        weight = check_array(weight, "weight", ("C",))
        if weight.shape[0] != c:
            raise ValueError(f"weight has {weight.shape[0]} entries but there are C = {c} classes")
        if (weight < 0).any():
            j = int(np.argmax(weight < 0))
            raise ValueError(f"weight[{j}] = {weight[j]} is negative; class weights must be >= 0")
    if ignore_index is not None:
        if isinstance(ignore_index, (bool, np.bool_)) or not isinstance(ignore_index, (int, np.integer)):
            raise TypeError(f"ignore_index must be an integer or None, got {ignore_index!r}")
        ignore_index = int(ignore_index)
    smoothing = _real_scalar(label_smoothing, "label_smoothing")
    if not 0.0 <= smoothing <= 1.0:  # NaN fails both comparisons
        raise ValueError(f"label_smoothing must lie in [0, 1], got {smoothing}")
    z = _real_scalar(z_loss, "z_loss")
    if not (np.isfinite(z) and z >= 0):
        raise ValueError(f"z_loss must be finite and >= 0, got {z}")
    if softcap is not None:
        softcap = _real_scalar(softcap, "softcap")
        if not (np.isfinite(softcap) and softcap > 0):
            raise ValueError(f"softcap must be a finite number > 0 (or None), got {softcap}")
    return LossOptions(weight, ignore_index, smoothing, z, softcap)


def _zero(value: Any) -> bool:
    """True for a plain Python 0 or 0.0 (the defaults); anything else goes through the full checks."""
    return type(value) in (int, float) and value == 0


def float_dtype(*arrays: np.ndarray) -> np.dtype:
    """float32 when every array is float32, else float64 (integers become float64)."""
    if all(a.dtype == np.float32 for a in arrays):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def check_params(params: Any, X: np.ndarray) -> dict[str, np.ndarray]:
    """Check ``params`` holds W1 (D, H), b1 (H,), W2 (H, C), b2 (C,) matching ``X`` (N, D)."""
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a mapping with keys {PARAM_NAMES}, got {type(params).__name__}")
    for key in PARAM_NAMES:
        if key not in params:
            raise ValueError(f"params is missing {key!r}; expected keys {PARAM_NAMES}")
    for key in params:
        if key not in PARAM_NAMES:
            raise ValueError(f"params has unexpected key {key!r}; expected keys {PARAM_NAMES}")
    W1 = check_array(params["W1"], "params['W1']", ("D", "H"))
    b1 = check_array(params["b1"], "params['b1']", ("H",))
    W2 = check_array(params["W2"], "params['W2']", ("H", "C"))
    b2 = check_array(params["b2"], "params['b2']", ("C",))
    D, H = W1.shape
    C = W2.shape[1]
    expected = {"b1": (H,), "W2": (H, C), "b2": (C,)}
    for key, arr in (("b1", b1), ("W2", W2), ("b2", b2)):
        if arr.shape != expected[key]:
            raise ValueError(
                f"params[{key!r}] has shape {arr.shape}, expected {expected[key]} "
                f"from params['W1'] {W1.shape} and params['W2'] {W2.shape}"
            )
    if X.shape[1] != D:
        raise ValueError(f"X has {X.shape[1]} columns but params['W1'] has D = {D} rows")
    return {"W1": W1, "b1": b1, "W2": W2, "b2": b2}


# --------------------------------------------------------------------- results
def fresh(result: Any, dtype: np.dtype, *inputs: Any) -> np.ndarray:
    """``result`` as a writable NumPy array of ``dtype`` that shares no memory with ``inputs``."""
    arr = np.asarray(result, dtype=dtype)
    # Memory of its own, not an input nor under one (a view's base is always the owner): nothing to check.
    owned = arr.flags.owndata and not any(x is arr or getattr(x, "base", None) is arr for x in inputs)
    if owned and arr.flags.writeable:
        return arr
    if not arr.flags.writeable or any(isinstance(x, np.ndarray) and np.may_share_memory(arr, x) for x in inputs):
        arr = arr.copy()
    return arr


def check_finite_result(loss: Any, gradient: np.ndarray, what: str) -> None:
    """Raise when finite inputs gave a non-finite loss or gradient: ``what`` overflowed on the way."""
    # A 2-D view, Fortran order turned into C order by the transpose: no copy, and the ones vector of
    # _surely_finite is one row long, not as long as the whole gradient.
    rows = (
        gradient.T if gradient.ndim == 2 and gradient.flags.f_contiguous else gradient.reshape(-1, gradient.shape[-1])
    )
    if not (np.all(np.isfinite(loss)) and _surely_finite(rows)):
        raise ValueError(
            f"the inputs are finite but {what} overflows in floating point (the loss came out {loss}); "
            "rescale the inputs"
        )


# --------------------------------------------------------------------- entries
def softmax_entry(impl: Callable[[np.ndarray], Any]) -> Callable[..., np.ndarray]:
    """Wrap ``impl(S)`` as the public ``softmax(scores)``."""

    @functools.wraps(impl)
    def softmax(scores: Any) -> np.ndarray:
        S, _ = check_masked_array(scores, "scores", ("N", "C"))
        dtype = float_dtype(S)
        return fresh(impl(S.astype(dtype, copy=False)), dtype, scores, S)

    return softmax


def jacobian_entry(impl: Callable[[np.ndarray], Any]) -> Callable[..., np.ndarray]:
    """Wrap ``impl(x)`` as the public ``softmax_jacobian(x)``."""

    @functools.wraps(impl)
    def softmax_jacobian(x: Any) -> np.ndarray:
        row, _ = check_masked_array(x, "x", ("C",))
        dtype = float_dtype(row)
        return fresh(impl(row.astype(dtype, copy=False)), dtype, x, row)

    return softmax_jacobian


def softmax_loss_entry(impl: Callable[..., tuple[Any, Any]]) -> Callable[..., tuple[Any, np.ndarray]]:
    """Wrap ``impl(S, y, reduction=..., options=LossOptions, grad_output=..., **extra)`` as the public ``softmax_loss``.

    ``y`` reaches ``impl`` as ``intp`` labels (N,) or as soft targets (N, C) of
    the computing dtype, which the scores set (options and soft targets are cast
    to it); ``grad_output`` as ``check_grad_output`` returns it. Scores may hold
    ``-inf`` (masked classes), checked against the targets here. ``extra`` is
    ``stable`` for the manual variants. The loss comes back a float, or for
    ``reduction="none"`` an (N,) array of the computing dtype.
    """

    @functools.wraps(impl, assigned=("__module__", "__name__", "__qualname__", "__doc__"), updated=())
    def softmax_loss(
        scores: Any,
        y: Any,
        *,
        reduction: str = "mean",
        grad_output: Any = None,
        weight: Any = None,
        ignore_index: int | None = None,
        label_smoothing: float = 0.0,
        z_loss: float = 0.0,
        softcap: float | None = None,
        **extra: Any,
    ) -> tuple[Any, np.ndarray]:
        S, mask = check_masked_array(scores, "scores", ("N", "C"))
        reduction = check_reduction(reduction, LOSS_REDUCTIONS)
        options = check_options(
            S.shape[1],
            weight=weight,
            ignore_index=ignore_index,
            label_smoothing=label_smoothing,
            z_loss=z_loss,
            softcap=softcap,
        )
        targets = check_targets(y, *S.shape, options.ignore_index)
        check_masked_targets(mask, targets, options, "scores")
        if "stable" in extra:
            extra["stable"] = check_flag(extra["stable"], "stable")
        dtype = float_dtype(S)
        cotangent = check_grad_output(grad_output, reduction, S.shape[0], dtype)
        if targets.ndim == 2:
            targets = targets.astype(dtype, copy=False)
        loss, dS = impl(
            S.astype(dtype, copy=False),
            targets,
            reduction=reduction,
            options=options.astype(dtype, mean_of_labels=reduction == "mean" and targets.ndim == 1),
            grad_output=cotangent,
            **extra,
        )
        originals = (scores, S, y, weight, grad_output)
        return loss_result(loss, reduction, dtype, originals), fresh(dS, dtype, *originals)

    del softmax_loss.__wrapped__  # show the public signature, not the implementation's
    return softmax_loss


def loss_result(loss: Any, reduction: str, dtype: np.dtype, originals: tuple[Any, ...]) -> Any:
    """The loss as the interface returns it: a float, or for "none" a fresh (N,) array of the computing dtype."""
    return fresh(loss, dtype, *originals) if reduction == "none" else float(loss)


def linear_loss_entry(impl: Callable[..., tuple[Any, Any]]) -> Callable[..., tuple[float, np.ndarray]]:
    """Wrap ``impl(W, X, y, reg=..., reduction=...)`` as the public ``linear_loss``."""

    @functools.wraps(impl)
    def linear_loss(W: Any, X: Any, y: Any, *, reg: float = 0.0, reduction: str = "mean") -> tuple[float, np.ndarray]:
        W_ = check_array(W, "W", ("D", "C"))
        X_ = check_array(X, "X", ("N", "D"))
        if X_.shape[1] != W_.shape[0]:
            raise ValueError(f"X has {X_.shape[1]} columns but W has D = {W_.shape[0]} rows")
        labels = check_labels(y, X_.shape[0], W_.shape[1])
        reg = check_reg(reg)
        reduction = check_reduction(reduction)
        dtype = float_dtype(W_, X_)
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported below, as an error
            loss, dW = impl(
                W_.astype(dtype, copy=False), X_.astype(dtype, copy=False), labels, reg=reg, reduction=reduction
            )
        check_finite_result(loss, np.asarray(dW), "the scores X @ W")
        return float(loss), fresh(dW, dtype, W, X, W_, X_)

    return linear_loss


def two_layer_loss_entry(impl: Callable[..., tuple[Any, Mapping[str, Any]]]) -> Callable[..., tuple[float, dict]]:
    """Wrap ``impl(params, X, y, reg=...)`` as the public ``two_layer_loss``."""

    @functools.wraps(impl)
    def two_layer_loss(params: Any, X: Any, y: Any, *, reg: float = 0.0) -> tuple[float, dict[str, np.ndarray]]:
        X_ = check_array(X, "X", ("N", "D"))
        checked = check_params(params, X_)
        labels = check_labels(y, X_.shape[0], checked["W2"].shape[1])
        reg = check_reg(reg)
        dtype = float_dtype(X_, *checked.values())
        cast = {key: arr.astype(dtype, copy=False) for key, arr in checked.items()}
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported below, as an error
            loss, grads = impl(cast, X_.astype(dtype, copy=False), labels, reg=reg)
        for key in PARAM_NAMES:
            check_finite_result(loss, np.asarray(grads[key]), "the forward pass X W1 + b1, H1 W2 + b2")
        originals = (X, X_, *checked.values(), *params.values())
        return float(loss), {key: fresh(grads[key], dtype, *originals) for key in PARAM_NAMES}

    return two_layer_loss


# --------------------------------------------------------------------- linear cross-entropy
def check_chunk_size(value: Any) -> int | None:
    """``chunk_size`` as a positive ``int``, or None (the implementation chooses)."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"chunk_size must be a positive integer or None, got {value!r}")
    if value < 1:
        raise ValueError(f"chunk_size must be a positive integer or None, got {value}")
    return int(value)


def check_linear_layout(
    X_shape: tuple[int, ...], W_shape: tuple[int, ...], bias_shape: tuple[int, ...] | None
) -> tuple[int, int, int]:
    """``(N, D, V)`` after checking that ``X`` (N, D), ``W`` (D, V) and ``bias`` (V,) chain; shapes only.

    Reads no values, so it serves device arrays as well as NumPy ones.
    """
    for name, shape, axes in (("X", X_shape, ("N", "D")), ("W", W_shape, ("D", "V")), ("bias", bias_shape, ("V",))):
        if shape is None:
            continue
        layout = "(" + ", ".join(axes) + ("," if len(axes) == 1 else "") + ")"
        if len(shape) != len(axes):
            raise ValueError(
                f"{name} must be {len(axes)}-D with shape {layout}, got {len(shape)}-D array of shape {tuple(shape)}"
            )
        for axis, size in zip(axes, shape, strict=True):
            if size == 0:
                raise ValueError(f"{name} must not be empty: {axis} = 0 in shape {tuple(shape)}")
    if X_shape[1] != W_shape[0]:
        raise ValueError(f"X has D = {X_shape[1]} columns but W has {W_shape[0]} rows; X W needs them equal")
    if bias_shape is not None and bias_shape[0] != W_shape[1]:
        raise ValueError(f"bias has {bias_shape[0]} entries but W has V = {W_shape[1]} columns")
    return X_shape[0], X_shape[1], W_shape[1]


def kept_label_weight(labels: np.ndarray, options: LossOptions) -> float:
    """``D_n`` of eq. (20) for integer labels: the summed class weight of the rows not ignored."""
    kept = labels if options.ignore_index is None else labels[labels != options.ignore_index]
    return float(kept.size if options.weight is None else np.sum(options.weight[kept], dtype=np.float64))


def linear_cross_entropy_entry(impl: Callable[..., tuple[Any, Mapping[str, Any]]]) -> Callable[..., tuple[float, dict]]:
    """Wrap ``impl(X, W, y, bias=..., reduction=..., options=..., grad_output=..., chunk_size=...)``.

    The public ``linear_cross_entropy``: ``X`` (N, D), ``W`` (D, V) and
    ``bias`` (V,) or None reach ``impl`` in the computing dtype, ``y`` as
    ``intp`` labels (integer labels only), the options validated for ``C = V``
    classes, ``grad_output`` as ``check_grad_output`` returns it, ``chunk_size``
    a positive int or None. A ``bias`` entry of ``-inf`` masks its class for
    every row. The result is ``(loss, {"X": dX, "W": dW[, "b": db]})`` of fresh
    NumPy arrays, the loss a float or, for "none", an (N,) array.
    """

    @functools.wraps(impl, assigned=("__module__", "__name__", "__qualname__", "__doc__"), updated=())
    def linear_cross_entropy(
        X: Any,
        W: Any,
        y: Any,
        *,
        bias: Any = None,
        reduction: str = "mean",
        grad_output: Any = None,
        weight: Any = None,
        ignore_index: int | None = None,
        label_smoothing: float = 0.0,
        z_loss: float = 0.0,
        softcap: float | None = None,
        chunk_size: int | None = None,
    ) -> tuple[Any, dict[str, np.ndarray]]:
        X_ = check_array(X, "X", ("N", "D"))
        W_ = check_array(W, "W", ("D", "V"))
        b_, mask = (None, None) if bias is None else check_masked_array(bias, "bias", ("V",))
        check_linear_layout(X_.shape, W_.shape, None if b_ is None else b_.shape)
        reduction = check_reduction(reduction, LOSS_REDUCTIONS)
        options = check_options(
            W_.shape[1],
            weight=weight,
            ignore_index=ignore_index,
            label_smoothing=label_smoothing,
            z_loss=z_loss,
            softcap=softcap,
        )
        labels = check_labels(y, X_.shape[0], W_.shape[1], options.ignore_index)
        check_masked_targets(mask, labels, options, "bias")
        chunk_size = check_chunk_size(chunk_size)
        dtype = float_dtype(X_, W_, *(() if b_ is None else (b_,)))
        cotangent = check_grad_output(grad_output, reduction, X_.shape[0], dtype)
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported below, as an error
            loss, grads = impl(
                X_.astype(dtype, copy=False),
                W_.astype(dtype, copy=False),
                labels,
                bias=None if b_ is None else b_.astype(dtype, copy=False),
                reduction=reduction,
                options=options.astype(dtype, mean_of_labels=reduction == "mean"),
                grad_output=cotangent,
                chunk_size=chunk_size,
            )
        keys = ("X", "W") if b_ is None else ("X", "W", "b")
        undefined = reduction == "mean" and kept_label_weight(labels, options) == 0  # eq. (20): NaN by definition
        for key in keys:
            check_finite_result(0.0 if undefined else loss, np.asarray(grads[key]), "the logits X W + b")
        originals = (X, W, y, bias, weight, grad_output, X_, W_, b_)
        grads = {key: fresh(grads[key], dtype, *originals) for key in keys}
        return loss_result(loss, reduction, dtype, originals), grads

    del linear_cross_entropy.__wrapped__  # show the public signature, not the implementation's
    return linear_cross_entropy
