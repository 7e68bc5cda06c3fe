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
# (offset in h, weight) of each difference f(x + offset h) - f(x - offset h): taken first, each difference is
# exactly 0 where f does not move (a masked -inf entry, eq. 56; a row whose cotangent is 0, eq. 54), and the
# derivative with it, not the rounding of -f + 8f - 8f + f.
_STENCIL = ((1.0, 8.0), (2.0, -1.0))


def central_difference(f: Callable[[np.ndarray], np.ndarray | float], x: np.ndarray, step: float = STEP) -> np.ndarray:
    """Derivative of ``f`` at ``x`` by eq. (16), one entry of ``x`` at a time.

    Returns an array of shape ``shape(f(x)) + shape(x)``: the gradient for a
    scalar ``f``, the Jacobian for a vector-valued one. An entry of ``-inf``
    (a masked class) stays ``-inf`` when stepped, so its derivative is exactly 0.

    >>> central_difference(lambda v: float(np.sum(v**3)), np.array([1.0, 2.0])).round(9).tolist()
    [3.0, 12.0]
    """
    point = np.array(x, dtype=np.float64)  # a private copy, perturbed in place and restored
    columns = []
    for index in np.ndindex(point.shape):
        original = point[index]
        total = 0.0
        for offset, weight in _STENCIL:
            values = []
            for sign in (1.0, -1.0):
                point[index] = original + sign * offset * step
                values.append(np.asarray(f(point), dtype=np.float64))
            total = total + weight * (values[0] - values[1])
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
    total = sum(weight * (float(f(point + offset * step * v)) - float(f(point - offset * step * v)))
                for offset, weight in _STENCIL)  # fmt: skip
    return total / (12.0 * step)


# ----------------------------------------------------------- values in NumPy
def _softmax_rows(S: np.ndarray) -> np.ndarray:
    e = np.exp(S - S.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def softmax_loss_value(
    S: np.ndarray, y: np.ndarray, reduction: str = "mean", options: LossOptions = TEXTBOOK
) -> float | np.ndarray:
    """Eqs. (4), (15), (17)-(21), (55)-(56) in NumPy float64, the loss that eq. (16) differentiates.

    Each row loss ``sum_j q_ij (lse_i - Z_ij)`` (eq. 19) is taken in shifted
    form, ``a_i log sum_j exp(Z_ij - m_i) - sum_j q_ij (Z_ij - m_i)``, so that no
    term of the size of ``m_i`` is added and then cancelled. A "mean" over a
    zero total weight is NaN (eq. 20); ``_differentiable_loss`` is the same
    loss with that term set to 0, whose derivative is the convention's zero.
    ``reduction="none"`` gives the (N,) row losses of eq. (55). A score of
    ``-inf`` is a masked class (eq. 56): it adds nothing, and ``-inf + h`` is
    still ``-inf``, so a difference quotient there is exactly 0.

    >>> softmax_loss_value(np.array([[0.0, 0.0, -np.inf], [1.0, 1.0, 1.0]]), np.array([0, 2]), "none").round(4)
    array([0.6931, 1.0986])
    """
    value, undefined = _differentiable_loss(S, y, reduction, options)
    return float("nan") if undefined else value


def _differentiable_loss(
    S: np.ndarray, y: np.ndarray, reduction: str, options: LossOptions
) -> tuple[float | np.ndarray, bool]:
    N, C = S.shape
    c = options.softcap
    masked = np.isneginf(S)
    Z = S if c is None else np.where(masked, -np.inf, c * np.tanh(np.where(masked, 0.0, S) / c))  # eq. (17), (56)
    m = Z.max(axis=1, keepdims=True)  # finite: every row keeps a class (the contract checks)
    shifted = Z - m
    log_sums = np.log(np.exp(shifted).sum(axis=1))
    shifted = np.where(masked, 0.0, shifted)  # a masked class carries no target mass: its term is 0, not 0 * -inf
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
        q *= kept[:, None]
        denominator = float(np.sum(kept * w[labels]))
    row_losses = kept * (q.sum(axis=1) * log_sums - np.sum(q * shifted, axis=1))  # eq. (19)
    penalties = options.z_loss * kept * (m[:, 0] + log_sums) ** 2 if options.z_loss else np.zeros(N)  # eq. (21)
    if reduction == "none":  # eq. (55): each row's loss, nothing divided
        return row_losses + penalties, False
    cross_entropy, penalty = float(np.sum(row_losses)), float(np.sum(penalties))
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


def _contracted(
    loss: Callable[[np.ndarray], float | np.ndarray], grad_output: float | np.ndarray
) -> Callable[[np.ndarray], float]:
    """The scalar ``g . l(x)`` whose gradient is the vector-Jacobian product of eq. (54).

    ``l`` is a scalar loss ("mean", "sum", ``g`` a number) or the (N,) row
    losses ("none", ``g`` one cotangent per row).
    """
    g = np.asarray(grad_output, dtype=np.float64)
    return lambda x: float(np.sum(g * np.asarray(loss(x), dtype=np.float64)))


@softmax_loss_entry
def softmax_loss(
    scores: np.ndarray,
    y: np.ndarray,
    *,
    reduction: str = "mean",
    options: LossOptions = TEXTBOOK,
    grad_output: float | np.ndarray = 1.0,
) -> tuple[float | np.ndarray, np.ndarray]:
    """Loss of eqs. (2), (4), with the options of eqs. (17)-(21), and its gradient by central differences.

    The gradient is that of ``grad_output . loss`` (eq. 54): a scalar
    cotangent for "mean" and "sum", one per row for the row losses of "none"
    (eq. 55); a masked (``-inf``) score gets exactly 0 (eq. 56).

    >>> from reference import finite_differences as fd
    >>> loss, dS = fd.softmax_loss([[0.0, 0.0], [0.0, 0.0]], [0, 1])
    >>> round(loss, 6), dS.round(9).tolist()
    (0.693147, [[-0.25, 0.25], [0.25, -0.25]])
    >>> losses, dS = fd.softmax_loss([[0.0, 0.0], [0.0, -np.inf]], [0, 0], reduction="none", grad_output=[2, 3])
    >>> losses.round(6).tolist(), dS.round(9).tolist()
    ([0.693147, 0.0], [[-1.0, 1.0], [0.0, 0.0]])
    """
    S = _f64(scores)
    targets = _f64(y) if y.ndim == 2 else y
    options = options.astype(np.dtype(np.float64))

    def loss_of(s: np.ndarray) -> float | np.ndarray:
        return _differentiable_loss(s, targets, reduction, options)[0]

    return softmax_loss_value(S, targets, reduction, options), central_difference(_contracted(loss_of, grad_output), S)


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
    grad_output: float | np.ndarray = 1.0,
    chunk_size: int | None = None,
) -> tuple[float | np.ndarray, dict[str, np.ndarray]]:
    """Linear cross-entropy of eq. (25), dense, and its X, W, b gradients by central differences (eq. 16).

    The loss is ``softmax_loss_value`` of the full logits ``X W + 1 b^T`` in
    float64 (the row losses of eq. 55 for "none"; a ``-inf`` bias masks its
    class, eq. 56), and the gradients are those of ``grad_output . loss``
    (eq. 54). Each gradient entry costs four evaluations, so this oracle is
    for small cases. ``chunk_size`` is accepted for the common signature and
    changes nothing here.

    >>> import numpy as np
    >>> from reference import finite_differences as fd
    >>> loss, grads = fd.linear_cross_entropy(np.ones((2, 1)), np.zeros((1, 2)), [0, 0], bias=np.zeros(2))
    >>> round(loss, 6), grads["b"].round(9).tolist()
    (0.693147, [-0.5, 0.5])
    """
    point = {"X": _f64(X), "W": _f64(W)} | ({} if bias is None else {"b": _f64(bias)})
    options = options.astype(np.dtype(np.float64))

    def loss_at(values: dict[str, np.ndarray]) -> float | np.ndarray:
        S = values["X"] @ values["W"] + (values["b"] if "b" in values else 0.0)
        return _differentiable_loss(S, y, reduction, options)[0]

    grads = {}
    for key in point:

        def loss_of(value: np.ndarray, key: str = key) -> float | np.ndarray:
            return loss_at({**point, key: value})

        grads[key] = central_difference(_contracted(loss_of, grad_output), point[key])
    S = point["X"] @ point["W"] + (point["b"] if "b" in point else 0.0)
    return softmax_loss_value(S, y, reduction, options), grads
