"""Per-row variant: one Python loop over samples, row-vector NumPy inside it.

The middle step of the source post: the loop over classes ``j`` is gone, so the
``j == y_i`` case becomes "fill the row as if no class were correct, then
subtract at ``y_i``" (here: set the entry at ``y_i`` from the other classes'
share, eq. 30, which does not cancel). Weight gradients accumulate one outer product per sample
(``dW2 += outer(H1[i], dS[i])``), bias gradients one row per sample
(``db2 += dS[i]``). Equation numbers refer to docs/derivation.md.
"""

from __future__ import annotations

import numpy as np

from manual._forward import l2_penalty, two_layer_forward
from manual._options import capped, reduced_loss, row_scales
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

__all__ = ["linear_cross_entropy", "linear_loss", "softmax", "softmax_jacobian", "softmax_loss", "two_layer_loss"]


def _softmax_rows(S: np.ndarray) -> np.ndarray:
    P = np.empty_like(S)
    for i in range(S.shape[0]):
        e = np.exp(S[i] - S[i].max())  # eq. (14)
        P[i] = e / e.sum()
    return P


def _target_row(y: np.ndarray, i: int, label: int | None, w: np.ndarray, e: float) -> np.ndarray:
    """Row ``q_i`` of eq. (18): the weighted, smoothed target of sample ``i``, as a (C,) row."""
    C = w.shape[0]
    if label is None:  # soft targets
        return w * ((1 - e) * y[i] + e / C)
    q = (e / C) * w
    q[label] += (1 - e) * w[label]
    return q


def _loss_and_dscores(
    S: np.ndarray,
    y: np.ndarray,
    reduction: str,
    options: LossOptions,
    stable: bool,
    grad_output: float | np.ndarray = 1.0,
) -> tuple[float | np.ndarray, np.ndarray]:
    """Loss and dL/dS one row at a time (eqs. 2, 5, 15; with options, eqs. 17-24; the VJP, eq. 54).

    Row ``i``: ``dZ[i] = g_i r_i (a_i p_i - q_i) + 2 z g_i u_i lse_i p_i`` (eqs. 24, 54); for
    the textbook loss that is ``g_i P[i] / N``, then ``g_i / N`` subtracted at ``y_i``.
    The loss is the rows' sum, or for "none" the rows themselves (eq. 55).
    """
    N, C = S.shape
    w = np.ones(C, S.dtype) if options.weight is None else options.weight
    scales = row_scales(y, options, reduction, S.dtype, grad_output)
    labels = scales.labels
    dS = np.empty_like(S)
    row_losses = np.zeros(N)  # float64: the sum over rows is accumulated in float64
    for i in range(N):
        q = _target_row(y, i, None if labels is None else labels[i], w, options.label_smoothing)  # eq. (18)
        if options.plain and not stable:
            exp_row = np.exp(S[i])  # the source post's literal formula; exp(-inf) = 0 keeps a mask (eq. 56)
            row_losses[i] = -np.log(exp_row[labels[i]] / exp_row.sum()) / (N if reduction == "mean" else 1)  # (2)
            dS[i] = scales.grad_ce[i] * (exp_row / exp_row.sum() - q)  # eqs. (5), (54)
            continue
        label = None if labels is None else labels[i]
        row = (scales.ce[i], scales.z[i], scales.grad_ce[i], scales.grad_z[i])
        row_losses[i], dS[i] = _row_loss_and_grad(S[i], q, label, *row, options, stable)
    return reduced_loss(row_losses, reduction, scales.undefined), dS


def _row_loss_and_grad(
    S_i: np.ndarray,
    q: np.ndarray,
    label: int | None,
    r_i: float,
    u_i: float,
    gr_i: float,
    gu_i: float,
    options: LossOptions,
    stable: bool = True,
) -> tuple[float, np.ndarray]:
    """Row ``i``'s share of the loss, ``r_i l_i + z u_i lse_i^2`` (eqs. 19-21), and its ``dS[i]`` (eqs. 24, 54).

    ``dZ[i] = g_i r_i (a_i p_i - q_i) + 2 z g_i u_i lse_i p_i`` (``gr_i = g_i r_i``, ``gu_i = g_i u_i``),
    then the cap's factor (17); the label's entry (``label`` None for soft targets, which have none) by
    eq. (30), from the other classes' sum. A masked class (-inf) gets ``p = 0`` and ``dS = 0`` (eq. 56).
    """
    z, c = options.z_loss, options.softcap
    Z_i = capped(S_i, c)  # eq. (17), -inf kept (eq. 56)
    shift = Z_i.max() if stable else 0.0
    exp_row = np.exp(Z_i - shift)  # eq. (14)
    total = exp_row.sum()
    a = q.sum()
    lse = shift + np.log(total)
    q_dot_z = q @ np.where(Z_i > -np.inf, Z_i - shift, 0)  # eq. (56): q = 0 where masked, and 0 * -inf is NaN
    row_loss = float(r_i * (a * np.log(total) - q_dot_z) + z * u_i * lse * lse)  # eqs. (19), (21)
    p = exp_row / total
    dS_i = gr_i * (a * p - q) + 2 * z * gu_i * lse * p  # eqs. (24), (54), its two terms apart (they may cancel)
    if label is not None:  # eq. (31): a_i p_iy - q_iy = (a_i - q_iy) p_iy - q_iy (1 - p_iy), nothing cancels
        others = np.arange(S_i.shape[0]) != label
        not_y = exp_row[others].sum() / total  # 1 - p_iy
        dS_i[label] = gr_i * q[others].sum() * p[label] - gr_i * q[label] * not_y + 2 * z * gu_i * lse * p[label]
    if c is not None:
        dS_i *= 1 - np.square(np.tanh(S_i / c))  # eq. (17)'s chain factor, 1 - tanh^2, 0 at -inf (eq. 56)
    return row_loss, dS_i


@softmax_entry
def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax, eq. (1), one row at a time, with the row max subtracted (eq. 14).

    Args:
        scores: (N, C) real array.

    Returns:
        (N, C) array whose rows are probability vectors.

    >>> from manual import per_row
    >>> per_row.softmax([[1.0, 2.0, 3.0], [1000.0, 1000.0, 0.0]]).round(4)
    array([[0.09  , 0.2447, 0.6652],
           [0.5   , 0.5   , 0.    ]])
    """
    return _softmax_rows(scores)


@jacobian_entry
def softmax_jacobian(x: np.ndarray) -> np.ndarray:
    """Jacobian of the softmax of one row, eq. (13), one row of ``J`` at a time.

    Row ``a`` is ``p_a (e_a - p)``, with ``e_a`` the a-th unit vector.

    Args:
        x: (C,) real array.

    Returns:
        (C, C) array ``J``.

    >>> from manual import per_row
    >>> per_row.softmax_jacobian([0.0, 0.0]).tolist()
    [[0.25, -0.25], [-0.25, 0.25]]
    """
    p = _softmax_rows(x[None, :])[0]
    J = np.empty((p.shape[0], p.shape[0]), p.dtype)
    for a in range(p.shape[0]):
        J[a] = -p[a] * p
        J[a, a] += p[a]
    return J


@softmax_loss_entry
def softmax_loss(
    scores: np.ndarray,
    y: np.ndarray,
    *,
    reduction: str = "mean",
    options: LossOptions = TEXTBOOK,
    grad_output: float | np.ndarray = 1.0,
    stable: bool = True,
) -> tuple[float | np.ndarray, np.ndarray]:
    """Softmax cross-entropy loss and dL/dscores, one sample row at a time.

    Loss eq. (4) from sample losses eq. (2); gradient eq. (5) as a row:
    ``dS[i] = P[i] / N``, then the label's entry set by eq. (30),
    ``-(sum of e[i, others]) / sum of e[i] / N`` (no ``1/N`` for ``"sum"``).
    With options, eq. (24) row by row, the label's entry by eq. (31).

    Args:
        scores: (N, C) real array ``S``.
        y: (N,) integer labels in ``[0, C)``, or (N, C) soft targets.
        reduction: ``"mean"`` (eq. 4, the default), ``"sum"`` (no ``1/N``) or
            ``"none"``: the (N,) per-row losses of eq. (55).
        grad_output: the loss's cotangent ``g`` (a float, or (N,) for
            ``"none"``; default ones): the gradient is the VJP of eq. (54).
        weight, ignore_index, label_smoothing, z_loss, softcap: the loss
            options (README, "Loss options"; torch's conventions).
        stable: subtract each row's max first (eq. 14); ``False`` is the source
            post's literal formula, which overflows past about 709 (float64).

    Returns:
        ``(loss, dS)``: a float (for ``"none"`` an (N,) array) and an (N, C)
        array of the scores' dtype. A score of ``-inf`` is a masked class:
        ``p = 0`` and ``dS = 0`` there (eq. 56).

    >>> from manual import per_row
    >>> loss, dS = per_row.softmax_loss([[0.0, 0.0], [0.0, 0.0]], [0, 1])
    >>> round(loss, 6), dS.tolist()
    (0.693147, [[-0.25, 0.25], [0.25, -0.25]])
    """
    return _loss_and_dscores(scores, y, reduction, options, stable, grad_output)


@linear_loss_entry
def linear_loss(
    W: np.ndarray, X: np.ndarray, y: np.ndarray, *, reg: float = 0.0, reduction: str = "mean"
) -> tuple[float, np.ndarray]:
    """Linear softmax classifier ``S = X W``: ``dW = sum_i outer(X[i], dS[i]) + reg W`` (eq. 12).

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
    >>> from manual import per_row
    >>> loss, dW = per_row.linear_loss(np.zeros((2, 2)), [[1.0, 2.0]], [1])
    >>> round(loss, 6), dW.tolist()
    (0.693147, [[0.5, -0.5], [1.0, -1.0]])
    """
    data_loss, dS = _loss_and_dscores(X @ W, y, reduction, TEXTBOOK, stable=True)
    dW = reg * W
    for i in range(X.shape[0]):
        dW += np.outer(X[i], dS[i])
    return data_loss + l2_penalty(reg, W), dW


@two_layer_loss_entry
def two_layer_loss(
    params: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray, *, reg: float = 0.0
) -> tuple[float, dict[str, np.ndarray]]:
    """Two-layer ReLU net: loss and gradients, accumulated one sample at a time.

    Forward eq. (7); loss eqs. (3)-(4); for each sample ``i`` (eqs. 8-11):
    ``dW2 += outer(H1[i], dS[i])``, ``db2 += dS[i]``,
    ``dZ1[i] = (W2 dS[i]) * [Z1[i] > 0]``, ``dW1 += outer(X[i], dZ1[i])``,
    ``db1 += dZ1[i]``; then ``reg W`` is added to each weight gradient.

    Args:
        params: mapping with ``W1`` (D, H), ``b1`` (H,), ``W2`` (H, C), ``b2`` (C,).
        X: (N, D) inputs.
        y: (N,) integer labels in ``[0, C)``.
        reg: L2 strength, ``>= 0``.

    Returns:
        ``(loss, grads)``, ``grads`` with the keys and shapes of ``params``.

    >>> import numpy as np
    >>> from manual import per_row
    >>> params = {"W1": np.eye(2), "b1": np.zeros(2), "W2": np.eye(2), "b2": np.zeros(2)}
    >>> loss, grads = per_row.two_layer_loss(params, [[1.0, -1.0]], [0], reg=0.1)
    >>> round(loss, 6), grads["b2"].round(6).tolist()
    (0.513262, [-0.268941, 0.268941])
    """
    W1, W2 = params["W1"], params["W2"]
    Z1, H1, S = two_layer_forward(params, X)
    data_loss, dS = _loss_and_dscores(S, y, "mean", TEXTBOOK, stable=True)

    dW2, db2 = reg * W2, np.zeros_like(params["b2"])
    dW1, db1 = reg * W1, np.zeros_like(params["b1"])
    for i in range(X.shape[0]):
        dW2 += np.outer(H1[i], dS[i])  # eq. (8)
        db2 += dS[i]  # eq. (9)
        dZ1_i = (W2 @ dS[i]) * (Z1[i] > 0)  # eq. (10)
        dW1 += np.outer(X[i], dZ1_i)  # eq. (11)
        db1 += dZ1_i  # eq. (11)

    loss = data_loss + l2_penalty(reg, W1, W2)
    return loss, {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}


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
    """Linear cross-entropy (eq. 25), one Python loop over rows: the row-blocked form of eq. (29), one row a block.

    Row ``i`` forms its own logits ``s_i = X[i] W + b`` (V,), its loss and
    ``dS[i]`` by eqs. (19)-(24) with the batch's ``r_i``, ``u_i`` (eq. 20's
    denominator comes from all the labels, before the loop), and spends them:
    ``dX[i] = dS[i] W^T``, ``dW += outer(X[i], dS[i])``, ``db += dS[i]``.
    Only one row of logits exists at a time; ``chunk_size`` is validated and
    does not change the tile, which is always one row.
    ``grad_output`` (a float, or (N,) for ``reduction="none"``, whose loss is
    the rows of eq. 55) multiplies each row's ``r_i`` and ``u_i`` (eq. 54), so
    ``dX``, ``dW`` and ``db`` alike; a ``bias`` of ``-inf`` masks a class (eq. 56).

    >>> import numpy as np
    >>> from manual import per_row
    >>> loss, grads = per_row.linear_cross_entropy(np.ones((2, 1)), np.zeros((1, 3)), [0, 2], bias=np.zeros(3))
    >>> round(loss, 6), grads["b"].round(6).tolist()
    (1.098612, [-0.166667, 0.333333, -0.166667])
    """
    V = W.shape[1]
    w = np.ones(V, X.dtype) if options.weight is None else options.weight
    scales = row_scales(y, options, reduction, X.dtype, grad_output)
    labels = scales.labels
    dX = np.empty_like(X)
    dW = np.zeros_like(W)
    db = np.zeros(V, X.dtype)
    row_losses = np.zeros(X.shape[0])
    for i in range(X.shape[0]):
        s_i = X[i] @ W if bias is None else X[i] @ W + bias  # eq. (29), a block of one row
        q = _target_row(y, i, labels[i], w, options.label_smoothing)  # eq. (18)
        row = (scales.ce[i], scales.z[i], scales.grad_ce[i], scales.grad_z[i])  # r_i, u_i, g_i r_i, g_i u_i (54)
        row_losses[i], dS_i = _row_loss_and_grad(s_i, q, labels[i], *row, options)
        dX[i] = dS_i @ W.T  # eq. (25): dX = dS W^T, one row
        dW += np.outer(X[i], dS_i)  # eq. (25): dW = X^T dS, one outer product per row
        db += dS_i  # eq. (25): db = 1^T dS, one row at a time
    grads = {"X": dX, "W": dW} | ({} if bias is None else {"b": db})
    return reduced_loss(row_losses, reduction, scales.undefined), grads
