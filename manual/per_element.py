"""Per-element variant: every gradient entry computed by Python loops over its indices.

The derivation transcribed literally, in the manner of the first code listing of
the source post (in Python 3, with the max shift): each entry of dS, dW2, db2,
dH1, dZ1, dW1, db1 and dW is written as its own sum over samples. Slow by
design; it is the baseline the other variants are timed against. Only the
forward pass (eq. 7) and the exponentials of the scores are vectorized.
Equation numbers refer to docs/derivation.md.
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
    N, C = S.shape
    P = np.empty_like(S)
    for i in range(N):
        row_max = S[i, 0]
        for j in range(1, C):
            row_max = max(row_max, S[i, j])
        total = 0.0
        for j in range(C):
            P[i, j] = np.exp(S[i, j] - row_max)  # eq. (14): the shift cancels in the ratio
            total += P[i, j]
        for j in range(C):
            P[i, j] = P[i, j] / total
    return P


def _target_entry(y: np.ndarray, i: int, j: int, label: int | None, w: np.ndarray, e: float) -> float:
    """``q_ij`` of eq. (18): the two cases ``j == y_i`` and ``j != y_i``, weighted and smoothed."""
    C = w.shape[0]
    if label is None:  # soft targets
        return w[j] * ((1 - e) * y[i, j] + e / C)
    if j == label:
        return (1 - e) * w[j] + (e / C) * w[j]
    return (e / C) * w[j]


def _loss_and_dscores(
    S: np.ndarray,
    y: np.ndarray,
    reduction: str,
    options: LossOptions,
    stable: bool,
    grad_output: float | np.ndarray = 1.0,
) -> tuple[float | np.ndarray, np.ndarray]:
    """Loss and dL/dS entry by entry (eqs. 2, 5, 15; with options, eqs. 17-24; the VJP, eq. 54).

    Entry ``(i, j)``: ``dZ_ij = g_i r_i (a_i p_ij - q_ij) + 2 z g_i u_i lse_i p_ij`` (eqs. 24, 54),
    which for the textbook loss is eq. (5), ``g_i (p_ij - [j == y_i]) / N``. A masked class
    (``-inf``) has ``p_ij = 0``, ``q_ij = 0`` and so ``dS_ij = 0`` (eq. 56). The loss is the rows'
    sum, or for "none" the rows themselves (eq. 55).
    """
    N, C = S.shape
    e, z, c = options.label_smoothing, options.z_loss, options.softcap
    w = np.ones(C, S.dtype) if options.weight is None else options.weight
    r, u, labels, undefined, gr, gu = row_scales(y, options, reduction, S.dtype, grad_output)
    Z = capped(S, c)  # eq. (17), elementwise like the forward pass; -inf kept (eq. 56)
    shift = Z.max(axis=1) if stable else np.zeros(N, S.dtype)
    exp_scores = np.exp(Z - shift[:, None])  # eq. (14)
    row_losses = np.zeros(N)  # float64: the sum over rows is accumulated in float64
    dS = np.zeros_like(S)
    for i in range(N):
        label = None if labels is None else labels[i]
        total = exp_scores[i, 0]
        for j in range(1, C):
            total += exp_scores[i, j]
        lse = shift[i] + np.log(total)
        a, q_dot_z = 0.0, 0.0
        others, q_others = 0.0, 0.0  # eq. (30): sums over the classes j != y_i, each taken apart
        for j in range(C):
            q_ij = _target_entry(y, i, j, label, w, e)
            a += q_ij
            if Z[i, j] > -np.inf:  # eq. (56): a masked class has q_ij = 0, and 0 * -inf is NaN
                q_dot_z += q_ij * (Z[i, j] - shift[i])
            if j != label:
                others += exp_scores[i, j]
                q_others += q_ij
        if options.plain and not stable:
            row_losses[i] = -np.log(exp_scores[i, label] / total) / (N if reduction == "mean" else 1)  # eq. (2)
        else:
            row_losses[i] = r[i] * (a * np.log(total) - q_dot_z) + z * u[i] * lse * lse  # eqs. (19), (21)
        for j in range(C):
            p_ij = exp_scores[i, j] / total
            q_ij = _target_entry(y, i, j, label, w, e)
            if j == label:  # eq. (31): a p_iy - q_iy = (a - q_iy) p_iy - q_iy (1 - p_iy), 1 - p_iy = others / total
                dZ_ij = gr[i] * q_others * p_ij - gr[i] * q_ij * (others / total) + 2 * z * gu[i] * lse * p_ij
            else:
                dZ_ij = gr[i] * (a * p_ij - q_ij) + 2 * z * gu[i] * lse * p_ij  # eqs. (24), (54)
            if c is not None:
                dZ_ij *= 1 - np.tanh(S[i, j] / c) ** 2  # eq. (17)'s chain factor, 1 - tanh^2, 0 at -inf (56)
            dS[i, j] = dZ_ij
    return reduced_loss(row_losses, reduction, undefined), dS


def _weight_gradient(A: np.ndarray, dS: np.ndarray, W: np.ndarray, reg: float) -> np.ndarray:
    """``dW[d, j] = sum_i A[i, d] dS[i, j] + reg W[d, j]``: eqs. (8), (11), (12) entry by entry."""
    N, D = A.shape
    C = dS.shape[1]
    dW = np.zeros_like(W)
    for d in range(D):
        for j in range(C):
            total = 0.0
            for i in range(N):
                total += A[i, d] * dS[i, j]
            dW[d, j] = total + reg * W[d, j]
    return dW


def _bias_gradient(dS: np.ndarray) -> np.ndarray:
    """``db[j] = sum_i dS[i, j]``: eqs. (9), (11), the ones vector written as a loop over i."""
    N, C = dS.shape
    db = np.zeros(C, dS.dtype)
    for j in range(C):
        for i in range(N):
            db[j] += dS[i, j]
    return db


@softmax_entry
def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax, eq. (1), each entry by a loop, with the row max subtracted (eq. 14).

    Args:
        scores: (N, C) real array.

    Returns:
        (N, C) array whose rows are probability vectors.

    >>> from manual import per_element
    >>> per_element.softmax([[1.0, 2.0, 3.0], [1000.0, 1000.0, 0.0]]).round(4)
    array([[0.09  , 0.2447, 0.6652],
           [0.5   , 0.5   , 0.    ]])
    """
    return _softmax_rows(scores)


@jacobian_entry
def softmax_jacobian(x: np.ndarray) -> np.ndarray:
    """Jacobian of the softmax of one row, eq. (13), by the Kronecker-delta case.

    ``J[a, b] = dp_a / dx_b = p_a (delta_ab - p_b)``.

    Args:
        x: (C,) real array.

    Returns:
        (C, C) array ``J``.

    >>> from manual import per_element
    >>> per_element.softmax_jacobian([0.0, 0.0]).tolist()
    [[0.25, -0.25], [-0.25, 0.25]]
    """
    p = _softmax_rows(x[None, :])[0]
    C = p.shape[0]
    J = np.empty((C, C), p.dtype)
    for a in range(C):
        for b in range(C):
            if a == b:
                J[a, b] = p[a] * (1 - p[b])
            else:
                J[a, b] = -p[a] * p[b]
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
    """Softmax cross-entropy loss and dL/dscores, each entry by the two-case formula.

    Loss eq. (4) from sample losses eq. (2); gradient eq. (5):
    ``dL/dS[i, j] = (P[i, j] - [j == y_i]) / N``, without the ``1/N`` for ``"sum"``,
    the label's case by eq. (30): ``-(sum over j != y_i of e_ij) / sum_j e_ij / N``.
    With options, each entry by eq. (24), the label's by eq. (31).

    Args:
        scores: (N, C) real array ``S``.
        y: (N,) integer labels in ``[0, C)``, or (N, C) soft targets.
        reduction: ``"mean"`` (eq. 4, the default), ``"sum"`` (no ``1/N``) or
            ``"none"``: the (N,) per-row losses of eq. (55).
        grad_output: the loss's cotangent ``g`` (a float, or (N,) for
            ``"none"``; default ones): the gradient is the VJP of eq. (54).
        weight, ignore_index, label_smoothing, z_loss, softcap: the loss
            options (README, "Loss options"; torch's conventions).
        stable: subtract each row's max first (eq. 14). ``False`` is the source
            post's literal formula, which overflows once a score passes about
            709 (float64) or 88.7 (float32).

    Returns:
        ``(loss, dS)``: a float (for ``"none"`` an (N,) array) and an (N, C)
        array of the scores' dtype. A score of ``-inf`` is a masked class:
        ``p = 0`` and ``dS = 0`` there (eq. 56).

    >>> from manual import per_element
    >>> loss, dS = per_element.softmax_loss([[0.0, 0.0], [0.0, 0.0]], [0, 1])
    >>> round(loss, 6), dS.tolist()
    (0.693147, [[-0.25, 0.25], [0.25, -0.25]])
    """
    return _loss_and_dscores(scores, y, reduction, options, stable, grad_output)


@linear_loss_entry
def linear_loss(
    W: np.ndarray, X: np.ndarray, y: np.ndarray, *, reg: float = 0.0, reduction: str = "mean"
) -> tuple[float, np.ndarray]:
    """Linear softmax classifier ``S = X W``: loss and ``dW = X^T dS + reg W`` (eq. 12).

    Each ``dW[d, j]`` is its own loop over samples. The loss adds
    ``R = reg/2 * sum W^2`` (eq. 3) to the data loss of eq. (4).

    Args:
        W: (D, C) weights.
        X: (N, D) inputs.
        y: (N,) integer labels in ``[0, C)``.
        reg: L2 strength, ``>= 0``.
        reduction: ``"mean"`` or ``"sum"`` over samples (the penalty is never divided by N).

    Returns:
        ``(loss, dW)`` with ``dW`` of shape (D, C).

    >>> import numpy as np
    >>> from manual import per_element
    >>> loss, dW = per_element.linear_loss(np.zeros((2, 2)), [[1.0, 2.0]], [1])
    >>> round(loss, 6), dW.tolist()
    (0.693147, [[0.5, -0.5], [1.0, -1.0]])
    """
    data_loss, dS = _loss_and_dscores(X @ W, y, reduction, TEXTBOOK, stable=True)
    return data_loss + l2_penalty(reg, W), _weight_gradient(X, dS, W, reg)


@two_layer_loss_entry
def two_layer_loss(
    params: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray, *, reg: float = 0.0
) -> tuple[float, dict[str, np.ndarray]]:
    """Two-layer ReLU net: mean softmax loss plus L2 penalty, every gradient entry by loops.

    Forward eq. (7); loss eqs. (3)-(4); gradients eqs. (8)-(11):
    ``dW2 = H1^T dS + reg W2``, ``db2 = 1^T dS``, ``dZ1 = (dS W2^T) * [Z1 > 0]``,
    ``dW1 = X^T dZ1 + reg W1``, ``db1 = 1^T dZ1``. The ReLU's derivative at 0 is 0.

    Args:
        params: mapping with ``W1`` (D, H), ``b1`` (H,), ``W2`` (H, C), ``b2`` (C,).
        X: (N, D) inputs.
        y: (N,) integer labels in ``[0, C)``.
        reg: L2 strength, ``>= 0``.

    Returns:
        ``(loss, grads)``, ``grads`` with the keys and shapes of ``params``.

    >>> import numpy as np
    >>> from manual import per_element
    >>> params = {"W1": np.eye(2), "b1": np.zeros(2), "W2": np.eye(2), "b2": np.zeros(2)}
    >>> loss, grads = per_element.two_layer_loss(params, [[1.0, -1.0]], [0], reg=0.1)
    >>> round(loss, 6), grads["b2"].round(6).tolist()
    (0.513262, [-0.268941, 0.268941])
    """
    W1, W2 = params["W1"], params["W2"]
    Z1, H1, S = two_layer_forward(params, X)
    N, H = Z1.shape
    C = S.shape[1]
    data_loss, dS = _loss_and_dscores(S, y, "mean", TEXTBOOK, stable=True)

    dW2 = _weight_gradient(H1, dS, W2, reg)  # eq. (8)
    db2 = _bias_gradient(dS)  # eq. (9)
    dZ1 = np.zeros_like(Z1)
    for i in range(N):
        for k in range(H):
            dH1_ik = 0.0
            for j in range(C):
                dH1_ik += dS[i, j] * W2[k, j]  # eq. (10): dH1 = dS W2^T
            dZ1[i, k] = dH1_ik if Z1[i, k] > 0 else 0.0  # eq. (10): the ReLU gate
    dW1 = _weight_gradient(X, dZ1, W1, reg)  # eq. (11)
    db1 = _bias_gradient(dZ1)  # eq. (11)

    loss = data_loss + l2_penalty(reg, W1, W2)
    return loss, {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}


def _logit(X: np.ndarray, W: np.ndarray, bias: np.ndarray | None, i: int, j: int) -> float:
    """``S_ij = sum_d X_id W_dj + b_j`` (eq. 25) by a loop over d."""
    S_ij = 0.0 if bias is None else bias[j]
    for d in range(X.shape[1]):
        S_ij += X[i, d] * W[d, j]
    return S_ij


def _cap(S_ij: float, c: float | None) -> float:
    """``Z_ij = c tanh(S_ij / c)`` (eq. 17); a masked class stays ``-inf`` (eq. 56), not ``-c``."""
    return S_ij if c is None or S_ij == -np.inf else c * np.tanh(S_ij / c)


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
    """Linear cross-entropy (eq. 25), every logit and every gradient entry by loops over i, j, d.

    The loop over classes is the online log-sum-exp of eq. (26) with chunks of
    one class: ``m' = max(m, Z_ij)``, ``s' = s exp(m - m') + exp(Z_ij - m')``,
    the sum taken over the classes other than the label and the label's logit
    kept aside, so that its entry comes from eq. (30).
    A second loop over the classes recomputes each logit and spends its
    ``dS_ij`` (eq. 24) at once (eq. 27): ``dX[i, d] += dS_ij W[d, j]``,
    ``dW[d, j] += X[i, d] dS_ij``, ``db[j] += dS_ij``. No row of logits is
    ever stored; ``chunk_size`` is validated and does not change the tile,
    which is always one class.
    ``grad_output`` (a float, or (N,) for ``reduction="none"``, whose loss is
    the rows of eq. 55) multiplies each row's ``r_i`` and ``u_i`` (eq. 54), so
    ``dX``, ``dW`` and ``db`` alike; a ``bias`` of ``-inf`` masks a class (eq. 56).

    >>> import numpy as np
    >>> from manual import per_element
    >>> loss, grads = per_element.linear_cross_entropy(np.ones((2, 1)), np.zeros((1, 3)), [0, 2])
    >>> round(loss, 6), grads["X"].tolist()
    (1.098612, [[0.0], [0.0]])
    """
    (N, D), V = X.shape, W.shape[1]
    e, z, c = options.label_smoothing, options.z_loss, options.softcap
    w = np.ones(V, X.dtype) if options.weight is None else options.weight
    r, u, labels, undefined, gr, gu = row_scales(y, options, reduction, X.dtype, grad_output)
    dX = np.zeros_like(X)
    dW = np.zeros_like(W)
    db = np.zeros(V, X.dtype)
    row_losses = np.zeros(N)
    for i in range(N):
        # eq. (26): running max, and running sum of exp(Z_ij - m) over the classes j != y_i (eq. 30)
        m, s_not_y, Z_y = -np.inf, 0.0, 0.0
        for j in range(V):
            Z_ij = _cap(_logit(X, W, bias, i, j), c)
            m_new = max(m, Z_ij)
            shift = m_new if m_new > -np.inf else 0.0  # eq. (56): no shift yet while every class so far is masked
            s_not_y = s_not_y * np.exp(m - shift)  # the old terms rescaled to the new max
            if j == labels[i]:
                Z_y = Z_ij  # the label's term kept aside
            else:
                s_not_y += np.exp(Z_ij - shift)
            m = m_new
        sigma = s_not_y + np.exp(Z_y - m)
        lse = m + np.log(sigma)
        not_y = s_not_y / sigma  # 1 - p_iy, eq. (30)
        a, q_others = 0.0, 0.0
        for j in range(V):
            q_ij = _target_entry(y, i, j, labels[i], w, e)
            a += q_ij  # eq. (18): a_i = sum_j q_ij
            q_others += 0.0 if j == labels[i] else q_ij
        for j in range(V):
            S_ij = _logit(X, W, bias, i, j)  # pass 2: the logit again
            Z_ij = _cap(S_ij, c)
            q_ij = _target_entry(y, i, j, labels[i], w, e)
            p_ij = np.exp(Z_ij - lse)
            if Z_ij > -np.inf:  # eq. (56): a masked class carries no target mass, and 0 * inf is NaN
                row_losses[i] += r[i] * q_ij * (lse - Z_ij)  # eq. (19): l_i = sum_j q_ij (lse_i - Z_ij)
            if j == labels[i]:  # eq. (30): the label entry from the other classes' share
                dS_ij = gr[i] * q_others * p_ij - gr[i] * q_ij * not_y + 2 * z * gu[i] * lse * p_ij
            else:
                dS_ij = gr[i] * (a * p_ij - q_ij) + 2 * z * gu[i] * lse * p_ij  # eqs. (24), (54)
            if c is not None:
                dS_ij *= 1 - np.tanh(S_ij / c) ** 2  # eq. (17)'s chain factor, 1 - tanh^2, 0 at -inf (56)
            for d in range(D):
                dX[i, d] += dS_ij * W[d, j]  # eq. (27): dX = sum over chunks of dS^(k) W^(k)T
                dW[d, j] += X[i, d] * dS_ij  # eq. (27): dW[:, j] = X^T dS[:, j]
            db[j] += dS_ij  # eq. (27): db[j] = 1^T dS[:, j]
        row_losses[i] += z * u[i] * lse * lse  # eq. (21)
    grads = {"X": dX, "W": dW} | ({} if bias is None else {"b": db})
    return reduced_loss(row_losses, reduction, undefined), grads
