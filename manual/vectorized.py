"""Vectorized variant: no Python loops; every gradient is one array expression.

The last step of the source post, with its slips fixed: the row sums are kept
as a column (no ``np.matrix``), the max is subtracted first, and ``db2`` is the
ones-vector product ``1^T dS`` written as such. Equation numbers refer to
docs/derivation.md.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import numpy as np

from manual._forward import l2_penalty, two_layer_forward
from manual._options import RowScales, row_scales
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


# Rows are processed in blocks of about this many bytes, so that each block's exp, row
# sums, scaling and label subtraction run while it sits in the core's L2 cache: the
# whole then costs about one read of S and one write of dS besides the exp itself.
BLOCK_BYTES = 1 << 20
_SMALLEST_NORMAL = {np.dtype(t): float(np.finfo(t).tiny) for t in (np.float32, np.float64)}


@functools.lru_cache(maxsize=16)
def _ones(n: int, dtype: np.dtype) -> np.ndarray:
    """The ones vector of the row sums ``dS @ 1``, kept between calls (read-only)."""
    ones = np.ones(n, dtype)
    ones.flags.writeable = False
    return ones


def _row_blocks(N: int, C: int, itemsize: int) -> Iterator[slice]:
    """Consecutive row ranges of about ``BLOCK_BYTES`` each (at least one row)."""
    rows = max(1, BLOCK_BYTES // (C * itemsize))
    for start in range(0, N, rows):
        yield slice(start, min(start + rows, N))


@contextmanager
def _row_broadcasts_unbuffered(S: np.ndarray) -> Iterator[None]:
    """Let ``(n, C) op (n, 1)`` run as C-long contiguous loops rather than through NumPy's buffer.

    NumPy stages a row broadcast through its 8192-element buffer whenever two rows
    fit in it, which makes ``D -= m[:, None]`` about 3x slower than a contiguous
    pass. A buffer shorter than a row turns that off; it is restored on exit.
    Short rows (C < 64) are faster through the buffer, so they keep it, and so
    do small arrays, where setting the buffer twice costs more than it saves.
    """
    C = S.shape[1]
    if C < 64 or S.size < 1 << 15:
        yield
        return
    previous = np.setbufsize(min(8192, C // 16 * 16))
    try:
        yield
    finally:
        np.setbufsize(previous)


def _shift_is_free(sums: np.ndarray, scale: float, dtype: np.dtype) -> bool:
    """True when the row sums of ``exp(S)``, taken with a shift of 0, are as good as the max-shifted ones.

    Eq. (14) allows any shift. With ``sums_i >= 1`` the row max is ``>= 0``, so
    every entry that is a normal number after the max shift is one before it
    too; with ``sums_i <= scale / smallest normal`` nothing overflowed and the
    factor ``scale / sums_i`` of every row is itself a normal number, so the
    scaled row keeps all its digits (a subnormal factor lost 2.4e-3 of the
    float32 gradient at N = 100000, issue 15). NaN and inf fail both tests.
    """
    return bool(sums.min() >= 1 and sums.max() <= scale / _SMALLEST_NORMAL[dtype])


def _block_loss_and_dscores(S: np.ndarray, y: np.ndarray, scale: float, stable: bool, dS: np.ndarray) -> np.ndarray:
    """One block of rows: ``dS = scale (P - Y)`` written into ``dS``; returns the sample losses ``L_i``.

    ``exp(S)`` first, unshifted: where ``_shift_is_free`` holds, that saves the
    max and subtract passes, and the shift is folded into the loss instead:
    ``L_i = log(sums_i / exp(S_iy))`` (eq. 15 with the shift ``S_iy``), exact to
    rounding while ``exp(S_iy)`` is normal, else ``log(sums_i) - S_iy``, which is
    then at least 708 (float64), so its rounding is relative. Otherwise the
    block is done again with the max shift (eq. 14).
    """
    rows = np.arange(S.shape[0])
    ones = _ones(S.shape[1], S.dtype)
    np.exp(S, out=dS)
    sums = dS @ ones  # row sums by BLAS: the cheapest pass over the block
    shifted = stable and not _shift_is_free(sums, scale, S.dtype)
    if shifted:
        row_max = S.max(axis=1)
        np.subtract(S, row_max[:, None], out=dS)  # eq. (14)
        np.exp(dS, out=dS)
        sums = dS @ ones
    exp_y = dS[rows, y]
    if not stable:
        losses = -np.log(exp_y / sums)  # eq. (2) as the post writes it
    elif shifted:
        losses = np.log(sums) - (S[rows, y] - row_max)  # eq. (15)
    else:
        losses = np.log(sums / exp_y)
        if exp_y.min() < _SMALLEST_NORMAL[S.dtype]:
            losses = np.where(exp_y >= _SMALLEST_NORMAL[S.dtype], losses, np.log(sums) - S[rows, y])
    factor = scale / sums
    dS *= factor[:, None]  # scale * P
    dS[rows, y] = exp_y * factor - scale  # eq. (6): dS = scale * (P - Y), Y never built
    return losses


def _loss_and_dscores(S: np.ndarray, y: np.ndarray, scale: float, stable: bool) -> tuple[float, np.ndarray]:
    """Sum of L_i times ``scale``, and ``dS = scale (P - Y)`` (eqs. 6, 14, 15), block by block of rows.

    ``dS`` is the only (N, C) allocation: each block is exponentiated,
    normalized and scaled in place, then ``scale`` is subtracted at ``[i, y_i]``;
    ``P`` and the one-hot ``Y`` are never materialized. The sample losses are
    summed in float64 whatever the scores' dtype.
    """
    N, C = S.shape
    dS = np.empty_like(S)
    losses = np.empty(N)
    # The stable form lets exp(S) overflow on purpose (then redoes the block); the literal one warns as NumPy does.
    quiet = np.errstate(over="ignore", divide="ignore", invalid="ignore") if stable else nullcontext()
    with _row_broadcasts_unbuffered(S), quiet:
        for block in _row_blocks(N, C, S.itemsize):
            losses[block] = _block_loss_and_dscores(S[block], y[block], scale, stable, dS[block])
    return scale * float(losses.sum()), dS


def _block_loss_and_dscores_with_options(
    S: np.ndarray,
    y: np.ndarray,
    scales: RowScales,
    options: LossOptions,
    stable: bool,
    dZ: np.ndarray,
) -> np.ndarray:
    """One block of rows with the options of eqs. (17)-(24): ``dZ`` written in place; returns each row's loss.

    ``dZ_i = r_i (a_i p_i - q_i) + 2 z u_i lse_i p_i`` (eq. 24): ``P``, scaled
    by ``r_i a_i``, then the smoothing row ``(e/C) w`` subtracted by broadcasting and the
    label term by a scatter-subtract at ``[i, y_i]``. For integer labels no
    one-hot and no (N, C) target is built; soft targets are (N, C) already.
    The row's loss is ``r_i l_i + z u_i lse_i^2`` (eqs. 19-21), in float64.
    """
    N, C = S.shape
    rows = np.arange(N)
    e, z, c = options.label_smoothing, options.z_loss, options.softcap
    w = options.weight
    tanh_S = None if c is None else np.tanh(S / c)
    Z = S if c is None else c * tanh_S  # eq. (17)
    shift = Z.max(axis=1) if stable else np.zeros(N, S.dtype)
    np.subtract(Z, shift[:, None], out=dZ)  # eq. (14); becomes exp, then P, then dZ, in place
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
    row_losses = scales.ce * (a * log_sums - q_dot_z).astype(np.float64)  # eqs. (19)-(20), in shifted form
    if z:
        row_losses += z * scales.z * np.square(lse, dtype=np.float64)  # eq. (21)
    dZ *= (1 / sums)[:, None]  # P
    # The two terms of eq. (24) apart: r_i (a_i p_i - q_i) may cancel to nothing, and a z-loss
    # term added to r_i a_i first would keep only about eps r_i a_i of its own digits.
    z_term = (2 * z * scales.z * lse)[:, None] * dZ if z else None
    dZ *= (scales.ce * a)[:, None]
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
    return row_losses


def _loss_and_dscores_with_options(
    S: np.ndarray, y: np.ndarray, reduction: str, options: LossOptions, stable: bool
) -> tuple[float, np.ndarray]:
    """Loss and dS with the options of eqs. (17)-(24), block by block of rows (see ``_row_blocks``)."""
    N, C = S.shape
    scales = row_scales(y, options, reduction, S.dtype)
    dZ = np.empty_like(S)
    losses = np.empty(N)
    with _row_broadcasts_unbuffered(S):
        for block in _row_blocks(N, C, S.itemsize):
            labels = None if scales.labels is None else scales.labels[block]
            part = RowScales(scales.ce[block], scales.z[block], labels, scales.undefined)
            losses[block] = _block_loss_and_dscores_with_options(S[block], y[block], part, options, stable, dZ[block])
    return (float("nan") if scales.undefined else float(losses.sum())), dZ


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
