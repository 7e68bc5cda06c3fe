"""Vectorized variant: no Python loops; every gradient is one array expression.

The last step of the source post, with its slips fixed: the row sums are kept
as a column (no ``np.matrix``), the max is subtracted first, and ``db2`` is the
ones-vector product ``1^T dS`` written as such. Equation numbers refer to
docs/derivation.md.
"""

from __future__ import annotations

import numpy as np

from manual._forward import l2_penalty, two_layer_forward
from manual._options import row_scales
from softmax_grad.contract import (
    TEXTBOOK,
    LossOptions,
    jacobian_entry,
    linear_loss_entry,
    softmax_entry,
    softmax_loss_entry,
    two_layer_loss_entry,
)

__all__ = ["linear_loss", "softmax", "softmax_jacobian", "softmax_loss", "two_layer_loss"]


def _softmax_rows(S: np.ndarray) -> np.ndarray:
    P = S - S.max(axis=1, keepdims=True)  # eq. (14)
    np.exp(P, out=P)
    P /= P.sum(axis=1, keepdims=True)
    return P


def _shift_is_free(row_max: np.ndarray, dtype: np.dtype, C: int) -> bool:
    """True when a shift of 0 is exactly as safe as the max shift (eq. 14 allows any shift).

    With every row max in ``[0, log(largest float) - log C - 1]``, ``exp(S)`` cannot
    overflow (nor can a row sum), and every entry that is a normal number after
    the max shift (``S_ij - m_i >= log(smallest normal)``) is one before it too,
    because ``m_i >= 0``: no digit the shift would keep is lost. The bound
    ``-log(smallest normal)`` keeps ``exp(-m_i)``, which turns the row sums
    back into the shifted ones for the loss, a normal number as well.
    Skipping the shift then saves a whole pass over memory.
    """
    info = np.finfo(dtype)
    limit = min(np.log(info.max) - np.log(C) - 1.0, -np.log(info.tiny))
    return bool(row_max.min() >= 0 and row_max.max() <= limit)


def _loss_and_dscores(S: np.ndarray, y: np.ndarray, scale: float, stable: bool) -> tuple[float, np.ndarray]:
    """Sum of L_i times ``scale``, and ``dS = scale (P - Y)`` (eqs. 6, 14, 15) in one buffer.

    The gradient is built in place in a single fresh array: exponentiate,
    normalize and scale in one multiply, then subtract ``scale`` at
    ``[i, y_i]``. ``P`` and the one-hot ``Y`` are never materialized. Every pass
    over the (N, C) data that is not needed is left out, so the whole costs
    little more than the ``exp`` itself: the max shift too, when a shift of 0
    is provably as safe (``_shift_is_free``).
    """
    N, C = S.shape
    rows = np.arange(N)
    ones = np.ones(C, S.dtype)
    row_max = S.max(axis=1)
    if not stable or _shift_is_free(row_max, S.dtype, C):
        shift = np.zeros(N, S.dtype)
        dS = np.exp(S)  # the only (N, C) allocation
    else:
        shift = row_max
        dS = np.subtract(S, shift[:, None])  # eq. (14); the only (N, C) allocation
        np.exp(dS, out=dS)
    sums = dS @ ones  # row sums of exp(S - shift); a BLAS pass is the cheapest read
    if stable:
        # eq. (15): log sum_j exp(S_ij - m_i), from whichever shift was applied, minus (S_iy - m_i)
        shifted_sums = sums if shift is row_max else sums * np.exp(shift - row_max)
        loss = np.sum(np.log(shifted_sums) - (S[rows, y] - row_max))
    else:
        loss = -np.sum(np.log(dS[rows, y] / sums))  # eq. (2) as the post writes it
    dS *= (scale / sums)[:, None]  # scale * P
    dS[rows, y] -= scale  # eq. (6): dS = scale * (P - Y), Y never built
    return scale * float(loss), dS


def _loss_and_dscores_with_options(
    S: np.ndarray, y: np.ndarray, reduction: str, options: LossOptions, stable: bool
) -> tuple[float, np.ndarray]:
    """Loss and dS with the options of eqs. (17)-(24), by row coefficients.

    ``dZ_i = r_i (a_i p_i - q_i) + 2 z u_i lse_i p_i`` (eq. 24): one scaled
    ``P``, then the smoothing row ``(e/C) w`` subtracted by broadcasting, the
    label term by a scatter-subtract at ``[i, y_i]``, and the z-term added. For integer labels no
    one-hot and no (N, C) target is built; soft targets are (N, C) already.
    """
    N, C = S.shape
    rows = np.arange(N)
    e, z, c = options.label_smoothing, options.z_loss, options.softcap
    w = options.weight
    scales = row_scales(y, options, reduction, S.dtype)
    tanh_S = None if c is None else np.tanh(S / c)
    Z = S if c is None else c * tanh_S  # eq. (17)
    shift = Z.max(axis=1) if stable else np.zeros(N, S.dtype)
    dZ = Z - shift[:, None]  # eq. (14); becomes exp, then P, then dZ, in place
    if y.ndim == 2:  # eq. (18), soft targets
        q = (1 - e) * y + e / C
        if w is not None:
            q *= w
        a = q.sum(axis=1)
        q_dot_z = np.einsum("ij,ij->i", q, dZ)
    else:  # eq. (18), integer labels: q_i = (1 - e) w_y e_y + (e / C) w, never built
        labels = scales.labels
        w_y = np.ones(N, S.dtype) if w is None else w[labels]
        a = (1 - e) * w_y + (e / C) * (C if w is None else w.sum())
        q_dot_z = (1 - e) * w_y * dZ[rows, labels]
        if e:
            q_dot_z += (e / C) * (dZ.sum(axis=1) if w is None else dZ @ w)
    np.exp(dZ, out=dZ)
    sums = dZ.sum(axis=1)
    log_sums = np.log(sums)
    lse = shift + log_sums
    row_losses = a * log_sums - q_dot_z  # eq. (19), in shifted form
    loss = np.dot(scales.ce, row_losses.astype(np.float64))
    if z:
        loss += z * np.dot(scales.z, np.square(lse, dtype=np.float64))  # eq. (21)
    # eq. (24): the z-term is added last, not folded into the p_i coefficient r_i a_i, whose rounding
    # would swamp it where the cross-entropy gradient vanishes (C = 1, or p_i = q_i / a_i to rounding)
    z_term = dZ * ((2 * z * scales.z * lse) / sums)[:, None] if z else None
    dZ *= (scales.ce * a / sums)[:, None]  # eq. (24), the p_i term
    if y.ndim == 2:
        dZ -= scales.ce[:, None] * q
    else:
        if e:
            dZ -= (scales.ce * (e / C))[:, None] * (np.ones(C, S.dtype) if w is None else w)
        dZ[rows, labels] -= scales.ce * (1 - e) * w_y
    if z_term is not None:
        dZ += z_term
    if tanh_S is not None:
        dZ *= 1 - np.square(tanh_S)  # eq. (17)'s chain factor
    return (float("nan") if scales.undefined else float(loss)), dZ


@softmax_entry
def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax, eq. (1), as one array expression with the row max subtracted (eq. 14).

    Args:
        scores: (N, C) real array.

    Returns:
        (N, C) array whose rows are probability vectors.

    >>> from manual import vectorized
    >>> vectorized.softmax([[1.0, 2.0, 3.0], [1000.0, 1000.0, 0.0]]).round(4)
    array([[0.09  , 0.2447, 0.6652],
           [0.5   , 0.5   , 0.    ]])
    """
    return _softmax_rows(scores)


@jacobian_entry
def softmax_jacobian(x: np.ndarray) -> np.ndarray:
    """Jacobian of the softmax of one row, eq. (13): ``J = diag(p) - p p^T``.

    Args:
        x: (C,) real array.

    Returns:
        (C, C) array ``J``, symmetric, rows summing to zero.

    >>> from manual import vectorized
    >>> vectorized.softmax_jacobian([0.0, 0.0]).tolist()
    [[0.25, -0.25], [-0.25, 0.25]]
    """
    p = _softmax_rows(x[None, :])[0]
    return np.diag(p) - np.outer(p, p)


@softmax_loss_entry
def softmax_loss(
    scores: np.ndarray,
    y: np.ndarray,
    *,
    reduction: str = "mean",
    options: LossOptions = TEXTBOOK,
    stable: bool = True,
) -> tuple[float, np.ndarray]:
    """Softmax cross-entropy loss and dL/dscores, fully vectorized.

    Loss eq. (4) from sample losses eq. (2) in log-sum-exp form (eq. 15);
    gradient eq. (6): ``dS = (P - Y) / N``, without the ``1/N`` for ``"sum"``.
    With options (class weights, ignore_index, label smoothing, soft targets,
    z-loss, soft-capping), eqs. (17)-(24).

    Args:
        scores: (N, C) real array ``S``.
        y: (N,) integer labels in ``[0, C)``, or (N, C) soft targets.
        reduction: ``"mean"`` (eq. 4, the default) or ``"sum"`` (no ``1/N``).
        weight, ignore_index, label_smoothing, z_loss, softcap: the loss
            options (DESIGN.md, "Loss options"; torch's conventions).
        stable: subtract each row's max first (eq. 14); ``False`` is the source
            post's literal formula, which overflows past about 709 (float64).

    Returns:
        ``(loss, dS)``: a float and an (N, C) array of the scores' dtype.

    >>> from manual import vectorized
    >>> loss, dS = vectorized.softmax_loss([[0.0, 0.0], [0.0, 0.0]], [0, 1])
    >>> round(loss, 6), dS.tolist()
    (0.693147, [[-0.25, 0.25], [0.25, -0.25]])
    >>> loss, dS = vectorized.softmax_loss([[0.0, 0.0], [0.0, 0.0]], [0, -100], ignore_index=-100)
    >>> round(loss, 6), dS.tolist()
    (0.693147, [[-0.5, 0.5], [0.0, 0.0]])
    """
    if options.plain and y.ndim == 1:
        scale = 1.0 / scores.shape[0] if reduction == "mean" else 1.0
        return _loss_and_dscores(scores, y, scale, stable)
    return _loss_and_dscores_with_options(scores, y, reduction, options, stable)


@linear_loss_entry
def linear_loss(
    W: np.ndarray, X: np.ndarray, y: np.ndarray, *, reg: float = 0.0, reduction: str = "mean"
) -> tuple[float, np.ndarray]:
    """Linear softmax classifier ``S = X W``: loss and ``dW = X^T dS + reg W`` (eq. 12).

    The loss adds ``R = reg/2 * sum W^2`` (eq. 3) to the data loss of eq. (4).

    Args:
        W: (D, C) weights.
        X: (N, D) inputs.
        y: (N,) integer labels in ``[0, C)``.
        reg: L2 strength, ``>= 0``.
        reduction: ``"mean"`` or ``"sum"`` over samples (the penalty is never divided by N).

    Returns:
        ``(loss, dW)`` with ``dW`` of shape (D, C).

    >>> import numpy as np
    >>> from manual import vectorized
    >>> loss, dW = vectorized.linear_loss(np.zeros((2, 2)), [[1.0, 2.0]], [1])
    >>> round(loss, 6), dW.tolist()
    (0.693147, [[0.5, -0.5], [1.0, -1.0]])
    """
    scale = 1.0 / X.shape[0] if reduction == "mean" else 1.0
    data_loss, dS = _loss_and_dscores(X @ W, y, scale, stable=True)
    dW = X.T @ dS + reg * W  # eq. (12)
    return data_loss + l2_penalty(reg, W), dW


@two_layer_loss_entry
def two_layer_loss(
    params: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray, *, reg: float = 0.0
) -> tuple[float, dict[str, np.ndarray]]:
    """Two-layer ReLU net: loss and every gradient as matrix products (eqs. 7-11).

    The bias ``b2`` is added to every row of ``H1 W2``: written out, that is
    ``S = H1 W2 + 1 b2^T`` with ``1`` the ones vector of length N. So
    ``dL/db2 = 1^T dS``, a sum over samples, not ``dS`` itself: each bias entry
    feeds all N rows, and each row sends its gradient back. The same holds
    for ``b1``.

    Args:
        params: mapping with ``W1`` (D, H), ``b1`` (H,), ``W2`` (H, C), ``b2`` (C,).
        X: (N, D) inputs.
        y: (N,) integer labels in ``[0, C)``.
        reg: L2 strength, ``>= 0``.

    Returns:
        ``(loss, grads)``, ``grads`` with the keys and shapes of ``params``.

    >>> import numpy as np
    >>> from manual import vectorized
    >>> params = {"W1": np.eye(2), "b1": np.zeros(2), "W2": np.eye(2), "b2": np.zeros(2)}
    >>> loss, grads = vectorized.two_layer_loss(params, [[1.0, -1.0]], [0], reg=0.1)
    >>> round(loss, 6), grads["b2"].round(6).tolist()
    (0.513262, [-0.268941, 0.268941])
    """
    W1, W2 = params["W1"], params["W2"]
    Z1, H1, S = two_layer_forward(params, X)
    ones = np.ones(X.shape[0], X.dtype)
    data_loss, dS = _loss_and_dscores(S, y, 1.0 / X.shape[0], stable=True)

    dW2 = H1.T @ dS + reg * W2  # eq. (8)
    db2 = ones @ dS  # eq. (9)
    dZ1 = (dS @ W2.T) * (Z1 > 0)  # eq. (10)
    dW1 = X.T @ dZ1 + reg * W1  # eq. (11)
    db1 = ones @ dZ1  # eq. (11)

    loss = data_loss + l2_penalty(reg, W1, W2)
    return loss, {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}
