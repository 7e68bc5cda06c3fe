"""Vectorized variant: the derivation's closed forms, one array expression per equation.

The last step of the source post, with its slips fixed: no loop over samples or
classes, the row max subtracted first (eq. 14), the row sums kept as a column
(no ``np.matrix``), and ``db2`` the ones-vector product ``1^T dS`` written as
such. Each line is one equation of docs/derivation.md, with its symbols as
names, so the file reads beside the derivation. Speed is not its job:
``manual.tuned`` computes the same numbers faster and says what each of its
tricks buys.
"""

from __future__ import annotations

import numpy as np

from manual._forward import l2_penalty, two_layer_forward
from manual._options import (
    capped,
    class_chunk_width,
    finite_shift,
    label_entry_weights,
    label_weights,
    reduced_loss,
    row_scales,
)
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
    E = np.exp(S - S.max(axis=1, keepdims=True))  # eq. (14)
    return E / E.sum(axis=1, keepdims=True)  # eq. (1)


def _loss_and_dscores(
    S: np.ndarray, y: np.ndarray, reduction: str, stable: bool = True, grad_output: float | np.ndarray = 1.0
) -> tuple[float | np.ndarray, np.ndarray]:
    """The textbook loss and gradient: eqs. (2), (4), (6), (14), (15), the label entry by eq. (30), the VJP (54).

    ``grad_output`` is the cotangent ``g``: a float, or (N,) for "none", whose loss is the rows (eq. 55).
    The sample losses are summed in float64 whatever the scores' dtype.
    """
    N, C = S.shape
    n = N if reduction == "mean" else 1  # eq. (4): "sum" and "none" have no 1/N
    g = np.broadcast_to(np.asarray(grad_output, S.dtype), (N,))[:, None]  # eq. (54): each row's cotangent
    rows = np.arange(N)
    m = S.max(axis=1, keepdims=True) if stable else np.zeros((N, 1), S.dtype)  # eq. (14)
    E = np.exp(S - m)  # a masked class, -inf, gives 0 (eq. 56)
    sigma = E.sum(axis=1, keepdims=True)
    P = E / sigma  # eq. (1)
    Y = np.arange(C) == y[:, None]  # the one-hot labels
    if stable:
        L = np.log(sigma[:, 0]) - (S[rows, y] - m[:, 0])  # eq. (15)
    else:
        L = -np.log(P[rows, y])  # eq. (2), as the source post writes it
    dS = g * (P - Y) / n  # eqs. (6), (54)
    dS[rows, y] = -g[:, 0] * np.sum(E, axis=1, where=~Y) / sigma[:, 0] / n  # eq. (30): p_iy - 1 without cancellation
    return (L if reduction == "none" else float(L.sum(dtype=np.float64)) / n), dS


def _loss_and_dscores_with_options(
    S: np.ndarray,
    y: np.ndarray,
    reduction: str,
    options: LossOptions,
    stable: bool = True,
    grad_output: float | np.ndarray = 1.0,
) -> tuple[float | np.ndarray, np.ndarray]:
    """Loss and gradient with the options, eqs. (17)-(24), the label entry by eqs. (30)-(31), the VJP (54).

    ``y`` holds integer labels (N,) or soft targets (N, C); ``r``, ``u`` are the
    rows' factors of eq. (24), which carry the reduction and the ignored rows;
    the gradient uses them times the cotangent, ``g r`` and ``g u`` (eq. 54).
    Masked classes (``-inf``) carry no target mass and get ``p = 0``, ``dS = 0`` (eq. 56).
    """
    N, C = S.shape
    e, z, c = options.label_smoothing, options.z_loss, options.softcap
    w = np.ones(C, S.dtype) if options.weight is None else options.weight
    r, u, labels, undefined, gr, gu = row_scales(y, options, reduction, S.dtype, grad_output)
    r, u, gr, gu = r[:, None], u[:, None], gr[:, None], gu[:, None]
    Z = capped(S, c)  # eq. (17), -inf kept (eq. 56)
    exists = Z > -np.inf  # eq. (56): the classes that are not masked
    m = Z.max(axis=1, keepdims=True) if stable else np.zeros((N, 1), S.dtype)  # eq. (14)
    E = np.exp(Z - m)
    sigma = E.sum(axis=1, keepdims=True)
    P = E / sigma  # eq. (1)
    lse = m + np.log(sigma)  # eq. (15)
    if labels is None:
        Q = w * ((1 - e) * y + e / C)  # eq. (18), soft targets
    else:
        Y = np.arange(C) == labels[:, None]
        Q = (1 - e) * w[labels][:, None] * Y + (e / C) * w  # eq. (18), integer labels
    a = Q.sum(axis=1, keepdims=True)  # eq. (18)
    l_i = a * np.log(sigma) - np.sum(Q * np.where(exists, Z - m, 0), axis=1, keepdims=True)  # eqs. (19), (56)
    row_losses = r * l_i + z * u * np.square(lse, dtype=np.float64)  # eqs. (20), (21), (55)
    dZ = gr * (a * P - Q)  # eqs. (24), (54), the cross-entropy term
    if labels is not None:
        q_y, rest = label_entry_weights(labels, options, C, S.dtype)  # q_iy and a_i - q_iy
        rows, g_i = np.arange(N), gr[:, 0]
        dZ[rows, labels] = g_i * rest * P[rows, labels] - g_i * q_y * np.sum(E, axis=1, where=~Y) / sigma[:, 0]  # (31)
    if z:
        dZ += 2 * z * gu * lse * P  # eqs. (24), (54), the z-loss term, added apart from r a P (it may cancel)
    dS = dZ if c is None else dZ * (1 - np.tanh(S / c) ** 2)  # eq. (17)'s chain factor, 0 at -inf (eq. 56)
    return reduced_loss(row_losses[:, 0], reduction, undefined), dS


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
    grad_output: float | np.ndarray = 1.0,
    stable: bool = True,
) -> tuple[float | np.ndarray, np.ndarray]:
    """Softmax cross-entropy loss and dL/dscores, each as one array expression.

    Loss eq. (4) from sample losses eq. (2) in log-sum-exp form (eq. 15);
    gradient eq. (6): ``dS = (P - Y) / N``, without the ``1/N`` for ``"sum"``,
    its label entries by eq. (30), times the cotangent ``g`` (eq. 54). With
    options (class weights, ignore_index, label smoothing, soft targets,
    z-loss, soft-capping), eqs. (17)-(24).

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

    >>> from manual import vectorized
    >>> loss, dS = vectorized.softmax_loss([[0.0, 0.0], [0.0, 0.0]], [0, 1])
    >>> round(loss, 6), dS.tolist()
    (0.693147, [[-0.25, 0.25], [0.25, -0.25]])
    >>> loss, dS = vectorized.softmax_loss([[0.0, 0.0], [0.0, 0.0]], [0, -100], ignore_index=-100)
    >>> round(loss, 6), dS.tolist()
    (0.693147, [[-0.5, 0.5], [0.0, 0.0]])

    Per-row losses (eq. 55) and the gradient at a cotangent of one per row (eq. 54):

    >>> losses, dS = vectorized.softmax_loss([[0.0, 0.0], [0.0, 0.0]], [0, 1], reduction="none", grad_output=[2, -1])
    >>> losses.round(6).tolist(), dS.tolist()
    ([0.693147, 0.693147], [[-1.0, 1.0], [-0.5, 0.5]])

    A masked class (``-inf``, eq. 56) has probability 0 and gradient 0:

    >>> loss, dS = vectorized.softmax_loss([[0.0, 0.0, -np.inf]], [1], reduction="sum")
    >>> round(loss, 6), dS.tolist()
    (0.693147, [[0.5, -0.5, 0.0]])
    """
    if options.plain and y.ndim == 1:
        return _loss_and_dscores(scores, y, reduction, stable, grad_output)
    return _loss_and_dscores_with_options(scores, y, reduction, options, stable, grad_output)


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
    data_loss, dS = _loss_and_dscores(X @ W, y, reduction)
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
    Z1, H1, S = two_layer_forward(params, X)  # eq. (7)
    ones = np.ones(X.shape[0], X.dtype)
    data_loss, dS = _loss_and_dscores(S, y, "mean")  # eq. (6)

    dW2 = H1.T @ dS + reg * W2  # eq. (8)
    db2 = ones @ dS  # eq. (9)
    dZ1 = (dS @ W2.T) * (Z1 > 0)  # eq. (10)
    dW1 = X.T @ dZ1 + reg * W1  # eq. (11)
    db1 = ones @ dZ1  # eq. (11)

    loss = data_loss + l2_penalty(reg, W1, W2)  # eqs. (3), (4)
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
    """Linear cross-entropy ``S = X W + 1 b^T`` (eq. 25), chunked over classes, never holding (N, V) logits.

    Pass 1 finds every row's ``lse`` by the online log-sum-exp (eq. 26), one
    (N x chunk) block of logits at a time, with the other classes' sum of
    eq. (30) kept apart from the label's term. Pass 2 recomputes each block,
    turns it into its ``dS^(k)`` by eq. (24) with the final ``lse`` (options of
    eqs. 17-24 included, the label entries by eq. 30), and spends it at once
    (eq. 27): ``dX += dS^(k) W^(k)T``, ``dW[:, k] = X^T dS^(k)``,
    ``db[k] = 1^T dS^(k)``. Memory O(N x chunk). ``chunk_size`` counts classes
    (default: about 4M logits per block, a multiple of 128); one chunk as wide
    as V is the dense computation (25).

    Args:
        X: (N, D) hidden states.
        W: (D, V) classifier.
        y: (N,) integer labels in ``[0, V)`` (or ``ignore_index``).
        bias: (V,) or None.
        reduction, grad_output, weight, ignore_index, label_smoothing, z_loss,
            softcap: as ``softmax_loss`` (README, "Loss options"); the
            cotangent scales ``dS``, hence ``dX``, ``dW`` and ``db`` alike (eq. 54).
        chunk_size: classes per chunk, a positive integer, or None.

    Returns:
        ``(loss, {"X": dX, "W": dW})``, plus ``"b": db`` when a bias is given;
        the loss an (N,) array for ``"none"`` (eq. 55). A ``bias`` entry of
        ``-inf`` masks its class: ``dW`` and ``db`` are 0 there (eq. 56).

    >>> import numpy as np
    >>> from manual import vectorized
    >>> loss, grads = vectorized.linear_cross_entropy(np.ones((2, 1)), np.zeros((1, 3)), [0, 2], chunk_size=2)
    >>> round(loss, 6), grads["W"].round(6).tolist()
    (1.098612, [[-0.166667, 0.333333, -0.166667]])
    >>> losses, grads = vectorized.linear_cross_entropy(
    ...     np.ones((2, 1)), np.zeros((1, 3)), [0, 1], bias=[0.0, 0.0, -np.inf], reduction="none", grad_output=[1, -1]
    ... )
    >>> losses.round(6).tolist(), grads["b"].tolist()
    ([0.693147, 0.693147], [-1.0, 1.0, 0.0])
    """
    N, V = X.shape[0], W.shape[1]
    e, z, c = options.label_smoothing, options.z_loss, options.softcap
    w = np.ones(V, X.dtype) if options.weight is None else options.weight
    r, u, labels, undefined, gr, gu = row_scales(y, options, reduction, X.dtype, grad_output)  # eqs. (20), (21), (54)
    w_y, a = label_weights(labels, options, V, X.dtype)  # eq. (18)
    q_y, rest = label_entry_weights(labels, options, V, X.dtype)  # eq. (31)
    width = class_chunk_width(N, V, chunk_size)
    chunks = [slice(k0, min(k0 + width, V)) for k0 in range(0, V, width)]

    def logits(k: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Chunk k's logits ``S^(k)`` (eq. 25), capped ``Z^(k)`` (eq. 17, -inf kept) and one-hot labels ``Y^(k)``."""
        S_k = X @ W[:, k] if bias is None else X @ W[:, k] + bias[k]
        Y_k = np.arange(k.start, k.stop) == labels[:, None]
        return S_k, capped(S_k, c), Y_k

    # Pass 1, eq. (26): running max m over every class, running sum over the classes other than the label.
    m, s_not_y, Z_y = np.full(N, -np.inf, X.dtype), np.zeros(N, X.dtype), np.empty(N, X.dtype)
    for k in chunks:
        _, Z, Y_k = logits(k)
        Z_y[Y_k.any(axis=1)] = Z[Y_k]  # the label's logit, kept aside (eq. 30)
        m_new = np.maximum(m, Z.max(axis=1))
        shift = finite_shift(m_new)  # eq. (56): -inf while every class so far is masked
        s_not_y = s_not_y * np.exp(m - shift) + np.sum(np.exp(Z - shift[:, None]), axis=1, where=~Y_k)
        m = m_new
    sigma = s_not_y + np.exp(Z_y - m)
    lse = m + np.log(sigma)  # eq. (26)
    not_y = s_not_y / sigma  # 1 - p_iy, eq. (30)

    # Pass 2, eqs. (24), (27), (54): each chunk's dS with the final lse and the cotangent, spent at once.
    row_loss = np.zeros(N)
    dX, dW, db = np.zeros_like(X), np.empty_like(W), np.empty(V, X.dtype)
    ones = np.ones(N, X.dtype)
    for k in chunks:
        S_k, Z, Y_k = logits(k)
        P = np.exp(Z - lse[:, None])  # eq. (1) with the final lse
        Q = (1 - e) * w_y[:, None] * Y_k + (e / V) * w[k]  # eq. (18), this chunk's columns
        row_loss += np.sum(Q * np.where(Z > -np.inf, lse[:, None] - Z, 0), axis=1, dtype=np.float64)  # (19); (56)
        dZ = gr[:, None] * (a[:, None] * P - Q)  # eqs. (24), (54), the cross-entropy term
        labelled = Y_k.any(axis=1)
        dZ[Y_k] = (gr * rest * np.exp(Z_y - lse) - gr * q_y * not_y)[labelled]  # eq. (31)
        if z:
            dZ += (2 * z * gu * lse)[:, None] * P  # eqs. (24), (54), the z-loss term, added apart
        dS = dZ if c is None else dZ * (1 - np.tanh(S_k / c) ** 2)  # eq. (17)'s chain factor, 0 at -inf (56)
        dX += dS @ W[:, k].T  # eq. (27): dX is a sum over chunks
        dW[:, k] = X.T @ dS  # eq. (27)
        db[k] = ones @ dS  # eq. (27)
    row_losses = r * row_loss + z * u * np.square(lse, dtype=np.float64)  # eqs. (20), (21), (55)
    grads = {"X": dX, "W": dW} | ({} if bias is None else {"b": db})
    return reduced_loss(row_losses, reduction, undefined), grads
