"""The public contract that every implementation shares (DESIGN.md, "Inputs").

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
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

REDUCTIONS = ("mean", "sum")
PARAM_NAMES = ("W1", "b1", "W2", "b2")


# --------------------------------------------------------------------- checks
def _as_array(value: Any, name: str) -> np.ndarray:
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as exc:  # ragged nested lists, odd objects
        raise ValueError(f"{name} could not be read as an array: {exc}") from None


def check_array(value: Any, name: str, axes: tuple[str, ...]) -> np.ndarray:
    """Return ``value`` as a finite, non-empty real array whose axes are ``axes``."""
    arr = _as_array(value, name)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    layout = "(" + ", ".join(axes) + ("," if len(axes) == 1 else "") + ")"
    if arr.ndim != len(axes):
        raise ValueError(
            f"{name} must be {len(axes)}-D with shape {layout}, got {arr.ndim}-D array of shape {arr.shape}"
        )
    for axis, size in zip(axes, arr.shape, strict=True):
        if size == 0:
            raise ValueError(f"{name} must not be empty: {axis} = 0 in shape {arr.shape}")
    if arr.dtype.kind == "f" and not _surely_finite(arr):
        bad = ~np.isfinite(arr)
        if bad.any():
            index = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"{name} holds {arr[index]} at index {index}; values must be finite")
    return arr


def _surely_finite(arr: np.ndarray) -> bool:
    """True only if every entry is finite; one BLAS pass, no temporary the size of ``arr``.

    A NaN or an infinity anywhere makes the product with a ones vector non-finite;
    a finite overflow of the sum gives a false alarm, which the exact check clears.
    """
    with np.errstate(all="ignore"):  # inf - inf inside the sum is the case being looked for
        return bool(np.isfinite(arr @ np.ones(arr.shape[-1], arr.dtype)).all())


def check_labels(y: Any, n: int, c: int) -> np.ndarray:
    """Return ``y`` as ``intp`` labels, after checking they are N integers in ``[0, C)``."""
    arr = _as_array(y, "y")
    if arr.dtype.kind not in "iu":
        raise TypeError(f"y must hold integer class labels, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"y must be 1-D with shape (N,), got {arr.ndim}-D array of shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"y has {arr.shape[0]} labels but there are N = {n} samples")
    # Compare before any cast or indexing, so that -1 is an error, not class C-1.
    bad = (arr < 0) | (arr >= c)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"y[{i}] = {arr[i]} is out of range: labels must lie in [0, {c}) for C = {c}")
    return arr.astype(np.intp)


def check_reduction(value: Any) -> str:
    if not isinstance(value, str) or value not in REDUCTIONS:
        raise ValueError(f"reduction must be 'mean' or 'sum', got {value!r}")
    return value


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
    if not arr.flags.writeable or any(isinstance(x, np.ndarray) and np.may_share_memory(arr, x) for x in inputs):
        arr = arr.copy()
    return arr


# --------------------------------------------------------------------- entries
def softmax_entry(impl: Callable[[np.ndarray], Any]) -> Callable[..., np.ndarray]:
    """Wrap ``impl(S)`` as the public ``softmax(scores)``."""

    @functools.wraps(impl)
    def softmax(scores: Any) -> np.ndarray:
        S = check_array(scores, "scores", ("N", "C"))
        dtype = float_dtype(S)
        return fresh(impl(S.astype(dtype, copy=False)), dtype, scores, S)

    return softmax


def jacobian_entry(impl: Callable[[np.ndarray], Any]) -> Callable[..., np.ndarray]:
    """Wrap ``impl(x)`` as the public ``softmax_jacobian(x)``."""

    @functools.wraps(impl)
    def softmax_jacobian(x: Any) -> np.ndarray:
        row = check_array(x, "x", ("C",))
        dtype = float_dtype(row)
        return fresh(impl(row.astype(dtype, copy=False)), dtype, x, row)

    return softmax_jacobian


def softmax_loss_entry(impl: Callable[..., tuple[Any, Any]]) -> Callable[..., tuple[float, np.ndarray]]:
    """Wrap ``impl(S, y, reduction=..., **options)`` as the public ``softmax_loss``."""

    @functools.wraps(impl)
    def softmax_loss(scores: Any, y: Any, *, reduction: str = "mean", **options: Any) -> tuple[float, np.ndarray]:
        S = check_array(scores, "scores", ("N", "C"))
        labels = check_labels(y, *S.shape)
        reduction = check_reduction(reduction)
        if "stable" in options:
            options["stable"] = check_flag(options["stable"], "stable")
        dtype = float_dtype(S)
        loss, dS = impl(S.astype(dtype, copy=False), labels, reduction=reduction, **options)
        return float(loss), fresh(dS, dtype, scores, S)

    return softmax_loss


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
        loss, dW = impl(
            W_.astype(dtype, copy=False), X_.astype(dtype, copy=False), labels, reg=reg, reduction=reduction
        )
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
        loss, grads = impl(cast, X_.astype(dtype, copy=False), labels, reg=reg)
        originals = (X, X_, *checked.values(), *params.values())
        return float(loss), {key: fresh(grads[key], dtype, *originals) for key in PARAM_NAMES}

    return two_layer_loss
