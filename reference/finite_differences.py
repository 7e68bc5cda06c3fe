"""The finite-difference oracle: no autodiff, no hand-derived gradient.

Each loss is evaluated in plain NumPy float64 (log-sum-exp form, eq. 15) and
differentiated numerically with the fourth-order central difference of eq. (16),

    f'(x) ~ (-f(x + 2h) + 8 f(x + h) - 8 f(x - h) + f(x - 2h)) / (12 h),

whose truncation error is O(h^4): with ``h = 1e-3`` it is below 1e-12 for these
smooth losses, and the rounding error stays near ``1e-13 * |f|``. The module
exposes the same six functions as every variant, so it is an oracle like any
other, and two helpers for any scalar function: ``central_difference`` (every
entry) and ``directional_derivative`` (one random direction, for large arrays).

The ReLU has a kink at 0, where a difference quotient that straddles it is
meaningless. ``two_layer_loss`` therefore freezes the ReLU gate ``[Z1 > 0]`` at
the point of evaluation: the loss is then smooth in every parameter, equal to
the network's loss wherever no pre-activation changes sign, and its derivative
at an exact zero follows the convention ``relu'(0) = 0``, as JAX's does.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from softmax_grad.contract import (
    TEXTBOOK,
    LossOptions,
    jacobian_entry,
    linear_cross_entropy_entry,
    linear_loss_entry,
    softmax_entry,
    softmax_loss_entry,
    two_layer_loss_entry,
)

__all__ = [
    "STEP",
    "central_difference",
    "directional_derivative",
    "linear_cross_entropy",
    "linear_loss",
    "linear_loss_value",
    "softmax",
    "softmax_jacobian",
    "softmax_loss",
    "softmax_loss_value",
    "two_layer_loss",
    "two_layer_loss_value",
]

STEP = 1e-3
_STENCIL = ((2.0, -1.0), (1.0, 8.0), (-1.0, -8.0), (-2.0, 1.0))  # (offset in h, weight)


def central_difference(f: Callable[[np.ndarray], np.ndarray | float], x: np.ndarray, step: float = STEP) -> np.ndarray:
    """Derivative of ``f`` at ``x`` by eq. (16), one entry of ``x`` at a time.

    Returns an array of shape ``shape(f(x)) + shape(x)``: the gradient for a
    scalar ``f``, the Jacobian for a vector-valued one.

    >>> central_difference(lambda v: float(np.sum(v**3)), np.array([1.0, 2.0])).round(9).tolist()
    [3.0, 12.0]
    """
    point = np.array(x, dtype=np.float64)  # a private copy, perturbed in place and restored
    columns = []
    for index in np.ndindex(point.shape):
        original = point[index]
        total = 0.0
        for offset, weight in _STENCIL:
            point[index] = original + offset * step
            total = total + weight * np.asarray(f(point), dtype=np.float64)
        point[index] = original
        columns.append(total / (12.0 * step))
    derivative = np.stack(columns, axis=-1)
    return derivative.reshape(np.shape(columns[0]) + point.shape)


def directional_derivative(
    f: Callable[[np.ndarray], float], x: np.ndarray, direction: np.ndarray, step: float = STEP
) -> float:
    """``d/dt f(x + t v)`` at ``t = 0`` by eq. (16): four calls of ``f``, whatever the size of ``x``.

    A gradient ``g`` is right along ``v`` when ``<g, v>`` equals this number.

    >>> round(directional_derivative(lambda v: float(np.sum(v**2)), np.ones(3), np.array([1.0, 0.0, 2.0])), 9)
    6.0
    """
    point = np.asarray(x, dtype=np.float64)
    v = np.asarray(direction, dtype=np.float64)
    total = sum(weight * float(f(point + offset * step * v)) for offset, weight in _STENCIL)
    return total / (12.0 * step)


# ----------------------------------------------------------- values in NumPy
def _softmax_rows(S: np.ndarray) -> np.ndarray:
    e = np.exp(S - S.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def softmax_loss_value(S: np.ndarray, y: np.ndarray, reduction: str = "mean", options: LossOptions = TEXTBOOK) -> float:
    """Eqs. (4), (15), (17)-(21) in NumPy float64, the loss that eq. (16) differentiates.

    Each row loss ``sum_j q_ij (lse_i - Z_ij)`` (eq. 19) is taken in shifted
    form, ``a_i log sum_j exp(Z_ij - m_i) - sum_j q_ij (Z_ij - m_i)``, so that no
    term of the size of ``m_i`` is added and then cancelled. A "mean" over a
    zero total weight is NaN (eq. 20); ``_differentiable_loss`` is the same
    loss with that term set to 0, whose derivative is the convention's zero.
    """
    value, undefined = _differentiable_loss(S, y, reduction, options)
    return float("nan") if undefined else value


def _differentiable_loss(S: np.ndarray, y: np.ndarray, reduction: str, options: LossOptions) -> tuple[float, bool]:
    N, C = S.shape
    c = options.softcap
    Z = S if c is None else c * np.tanh(S / c)  # eq. (17)
    m = Z.max(axis=1, keepdims=True)
    shifted = Z - m
    log_sums = np.log(np.exp(shifted).sum(axis=1))
    w = np.ones(C) if options.weight is None else np.asarray(options.weight, dtype=np.float64)
    e = options.label_smoothing
    if y.ndim == 2:
        q = w * ((1 - e) * y + e / C)  # eq. (18), soft targets
        kept = np.ones(N)
        denominator = float(N)
    else:
        kept = np.ones(N) if options.ignore_index is None else (y != options.ignore_index).astype(np.float64)
        labels = np.where(kept > 0, y, 0)
        q = (e / C) * np.tile(w, (N, 1))  # eq. (18), integer labels
        q[np.arange(N), labels] += (1 - e) * w[labels]
        denominator = float(np.sum(kept * w[labels]))
    row_losses = q.sum(axis=1) * log_sums - np.sum(q * shifted, axis=1)  # eq. (19)
    cross_entropy = float(np.sum(kept * row_losses))
    penalty = options.z_loss * float(np.sum(kept * (m[:, 0] + log_sums) ** 2)) if options.z_loss else 0.0  # eq. (21)
    if reduction == "sum":
        return cross_entropy + penalty, False
    undefined = denominator == 0
    cross_entropy = 0.0 if undefined else cross_entropy / denominator
    return cross_entropy + penalty / max(float(kept.sum()), 1.0), undefined


def linear_loss_value(W: np.ndarray, X: np.ndarray, y: np.ndarray, reg: float, reduction: str) -> float:
    """Eq. (12)'s classifier loss plus eq. (3)'s penalty."""
    return softmax_loss_value(X @ W, y, reduction) + 0.5 * reg * float(np.sum(W * W))


def two_layer_loss_value(
    params: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray, reg: float, gate: np.ndarray | None = None
) -> float:
    """Eqs. (3), (4), (7); with ``gate`` given, ``H1 = Z1 * gate`` instead of ``max(0, Z1)``."""
    Z1 = X @ params["W1"] + params["b1"]
    H1 = np.maximum(Z1, 0.0) if gate is None else Z1 * gate
    S = H1 @ params["W2"] + params["b2"]
    penalty = 0.5 * reg * float(np.sum(params["W1"] ** 2) + np.sum(params["W2"] ** 2))
    return softmax_loss_value(S, y, "mean") + penalty


def _f64(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


# ----------------------------------------------------------- the interface
@softmax_entry
def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax, eq. (1), in NumPy float64 (the values the Jacobian is taken of).

    >>> from reference import finite_differences as fd
    >>> fd.softmax([[1.0, 2.0, 3.0]]).round(4)
    array([[0.09  , 0.2447, 0.6652]])
    """
    return _softmax_rows(_f64(scores))


@jacobian_entry
def softmax_jacobian(x: np.ndarray) -> np.ndarray:
    """Eq. (13) by central differences of the softmax, one column per entry of ``x``.

    >>> from reference import finite_differences as fd
    >>> fd.softmax_jacobian([0.0, 0.0]).round(9).tolist()
    [[0.25, -0.25], [-0.25, 0.25]]
    """
    return central_difference(lambda v: _softmax_rows(v[None, :])[0], _f64(x))


@softmax_loss_entry
def softmax_loss(
    scores: np.ndarray, y: np.ndarray, *, reduction: str = "mean", options: LossOptions = TEXTBOOK
) -> tuple[float, np.ndarray]:
    """Loss of eqs. (2), (4), with the options of eqs. (17)-(21), and dL/dscores by central differences.

    >>> from reference import finite_differences as fd
    >>> loss, dS = fd.softmax_loss([[0.0, 0.0], [0.0, 0.0]], [0, 1])
    >>> round(loss, 6), dS.round(9).tolist()
    (0.693147, [[-0.25, 0.25], [0.25, -0.25]])
    """
    S = _f64(scores)
    targets = _f64(y) if y.ndim == 2 else y
    options = options.astype(np.dtype(np.float64))

    def loss_of(s: np.ndarray) -> float:
        return _differentiable_loss(s, targets, reduction, options)[0]

    return softmax_loss_value(S, targets, reduction, options), central_difference(loss_of, S)


@linear_loss_entry
def linear_loss(
    W: np.ndarray, X: np.ndarray, y: np.ndarray, *, reg: float = 0.0, reduction: str = "mean"
) -> tuple[float, np.ndarray]:
    """Loss of eq. (12)'s classifier plus eq. (3), and dL/dW by central differences.

    >>> import numpy as np
    >>> from reference import finite_differences as fd
    >>> loss, dW = fd.linear_loss(np.zeros((2, 2)), [[1.0, 2.0]], [1])
    >>> round(loss, 6), dW.round(9).tolist()
    (0.693147, [[0.5, -0.5], [1.0, -1.0]])
    """
    W64, X64 = _f64(W), _f64(X)

    def loss_of(w: np.ndarray) -> float:
        return linear_loss_value(w, X64, y, reg, reduction)

    return loss_of(W64), central_difference(loss_of, W64)


@two_layer_loss_entry
def two_layer_loss(
    params: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray, *, reg: float = 0.0
) -> tuple[float, dict[str, np.ndarray]]:
    """Loss of eqs. (3), (4), (7), and each parameter's gradient by central differences.

    The ReLU gate is frozen at the point of evaluation (see the module docstring).

    >>> import numpy as np
    >>> from reference import finite_differences as fd
    >>> params = {"W1": np.eye(2), "b1": np.zeros(2), "W2": np.eye(2), "b2": np.zeros(2)}
    >>> loss, grads = fd.two_layer_loss(params, [[1.0, -1.0]], [0], reg=0.1)
    >>> round(loss, 6), grads["b2"].round(6).tolist()
    (0.513262, [-0.268941, 0.268941])
    """
    point = {key: _f64(value) for key, value in params.items()}
    X64 = _f64(X)
    gate = (X64 @ point["W1"] + point["b1"] > 0).astype(np.float64)
    grads = {}
    for key in point:

        def loss_of(value: np.ndarray, key: str = key) -> float:
            return two_layer_loss_value({**point, key: value}, X64, y, reg, gate)

        grads[key] = central_difference(loss_of, point[key])
    return two_layer_loss_value(point, X64, y, reg), grads


@linear_cross_entropy_entry
def linear_cross_entropy(
    X: np.ndarray,
    W: np.ndarray,
    y: np.ndarray,
    *,
    bias: np.ndarray | None = None,
    reduction: str = "mean",
    options: LossOptions = TEXTBOOK,
    chunk_size: int | None = None,
) -> tuple[float, dict[str, np.ndarray]]:
    """Linear cross-entropy of eq. (25), dense, and dL/dX, dL/dW, dL/db by central differences (eq. 16).

    The loss is ``softmax_loss_value`` of the full logits ``X W + 1 b^T`` in
    float64; each gradient entry costs four evaluations, so this oracle is for
    small cases. ``chunk_size`` is accepted for the common signature and
    changes nothing here.

    >>> import numpy as np
    >>> from reference import finite_differences as fd
    >>> loss, grads = fd.linear_cross_entropy(np.ones((2, 1)), np.zeros((1, 2)), [0, 0], bias=np.zeros(2))
    >>> round(loss, 6), grads["b"].round(9).tolist()
    (0.693147, [-0.5, 0.5])
    """
    point = {"X": _f64(X), "W": _f64(W)} | ({} if bias is None else {"b": _f64(bias)})
    options = options.astype(np.dtype(np.float64))

    def loss_at(values: dict[str, np.ndarray]) -> float:
        S = values["X"] @ values["W"] + (values["b"] if "b" in values else 0.0)
        return _differentiable_loss(S, y, reduction, options)[0]

    grads = {}
    for key in point:

        def loss_of(value: np.ndarray, key: str = key) -> float:
            return loss_at({**point, key: value})

        grads[key] = central_difference(loss_of, point[key])
    S = point["X"] @ point["W"] + (point["b"] if "b" in point else 0.0)
    return softmax_loss_value(S, y, reduction, options), grads
