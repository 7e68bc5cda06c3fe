"""Tuned variant: the vectorized closed form, engineered for speed in NumPy.

The equations are those of ``manual.vectorized`` (docs/derivation.md); read
that module for the mathematics and this one for what speed costs in code.
What was measured to pay on a CPU, each with its reason beside it: rows in
blocks that sit in the core's cache, the max shift skipped where it is provably
free (and redone for the rows where it is not), NumPy's buffer turned off for
row broadcasts, row sums by BLAS through a cached ones vector, and the loss and
label entries on (N,) vectors, never through a one-hot ``Y``. Timings in
docs/benchmarks/report.md. ``softmax`` and ``softmax_jacobian`` gain nothing
from it and are ``manual.vectorized``'s.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

import numpy as np

from manual import vectorized
from manual._forward import l2_penalty, two_layer_forward
from manual._options import (
    RowScales,
    capped,
    class_chunk_width,
    finite_shift,
    label_entry_weights,
    label_weights,
    reduced_loss,
    row_scales,
)
from softmax_grad import contract
from softmax_grad.contract import (
    TEXTBOOK,
    LossOptions,
    linear_cross_entropy_entry,
    linear_loss_entry,
    softmax_loss_entry,
    two_layer_loss_entry,
)

__all__ = ["linear_cross_entropy", "linear_loss", "softmax", "softmax_jacobian", "softmax_loss", "two_layer_loss"]


# The softmax and its Jacobian: one pass each, nothing for blocks to buy.
softmax = vectorized.softmax
softmax_jacobian = vectorized.softmax_jacobian

# Rows are processed in blocks of about this many bytes, so that each block's passes after
# the first read it from the core's L2 cache. Measured at 4096x1000 (issue 14): the options
# path, with its many passes, takes half the time of whole-array passes; for the plain path
# (exp, row sums, scaling a block) 256 KiB to 1 MiB are within noise of each other, 2 MiB slower.
# At 4096x1000 each whole-array pass is 32 MB (float64), far beyond any core's cache.
BLOCK_BYTES = 1 << 20
_SMALLEST_NORMAL = {np.dtype(t): float(np.finfo(t).tiny) for t in (np.float32, np.float64)}


def _row_blocks(N: int, C: int, itemsize: int) -> Iterator[slice]:
    """Consecutive row ranges of about ``BLOCK_BYTES`` each (at least one row)."""
    rows = max(1, BLOCK_BYTES // (C * itemsize))
    for start in range(0, N, rows):
        yield slice(start, min(start + rows, N))


def _row_broadcasts_unbuffered(S: np.ndarray) -> AbstractContextManager[None]:
    """Let ``(n, C) op (n, 1)`` run as C-long contiguous loops rather than through NumPy's buffer.

    NumPy stages a row broadcast through its 8192-element buffer whenever two rows
    fit in it, which makes ``D -= m[:, None]`` about 3x slower than a contiguous
    pass (measured at 4096x1000, issue 14). A buffer shorter than a row turns that
    off; it is restored on exit.
    Short rows (C < 64) are faster through the buffer, so they keep it, and so
    do small arrays, where setting the buffer twice costs more than it saves.
    """
    C = S.shape[1]
    if C < 64 or S.size < 1 << 15:
        return nullcontext()
    return _buffer_size(min(8192, C // 16 * 16))


@contextmanager
def _buffer_size(size: int) -> Iterator[None]:
    previous = np.setbufsize(size)
    try:
        yield
    finally:
        np.setbufsize(previous)


def _shift_is_free(sums: np.ndarray, scale: float | np.ndarray, dtype: np.dtype) -> bool:
    """True when the row sums of ``exp(S)``, taken with a shift of 0, are as good as the max-shifted ones.

    Eq. (14) allows any shift; a shift of 0 saves the max and the subtraction,
    two of the five whole passes of the plain loss (derivation, section 3).
    With ``sums_i >= 1`` the row max is ``>= 0``, so every entry that is a
    normal number after the max shift is one before it too; with
    ``sums_i <= 1 / smallest normal`` nothing overflowed and the loss's
    ``log`` keeps its digits; with ``sums_i <= |scale_i| / smallest normal``
    the factor ``scale_i / sums_i`` of every row is itself a normal number, so
    the scaled row keeps all its digits (a subnormal factor lost 2.4e-3 of the
    float32 gradient at N = 100000, issue 15). ``scale`` is the cotangent over
    the reduction's divisor (eq. 54): any sign, and where it is 0 the factor is
    exactly 0 at any sum. A masked class (``-inf``) adds ``exp(-inf) = 0`` to
    its row's sum with or without a shift (eq. 56). NaN and inf fail the test.
    """
    return bool(_shift_free_rows(sums, scale, dtype).all())


def _shift_free_rows(sums: np.ndarray, scale: float | np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Row by row, ``_shift_is_free``'s test: a boolean (N,) array (NaN fails it)."""
    tiny = _SMALLEST_NORMAL[dtype]
    magnitude = np.abs(scale)
    return (sums >= 1) & (sums <= 1 / tiny) & ((sums <= magnitude / tiny) | (magnitude == 0))


def _rows_needing_the_shift(sums: np.ndarray, scale: float | np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Indices of the rows that fail ``_shift_is_free``'s test, row by row (NaN fails it too)."""
    return np.flatnonzero(~_shift_free_rows(sums, scale, dtype))


def _of_rows(scale: float | np.ndarray, rows: slice | np.ndarray) -> float | np.ndarray:
    """The rows' share of ``scale``: a float is every row's, an (N,) array is indexed."""
    return scale if np.ndim(scale) == 0 else scale[rows]


def _normalized_rows(
    S: np.ndarray, y: np.ndarray, scale: float | np.ndarray, shift: np.ndarray | None, out: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``out = scale exp(S - shift) / sums`` row by row (eqs. 6, 14, 54; no label term yet).

    Returns ``sums``, ``exp(S_iy - shift_i)`` and the other classes' sum
    ``sigma^{not y}`` of eq. (30); ``shift`` None is the shift 0.

    Four NumPy calls, a gather and two scatters, each on rows that sit in cache.
    """
    if shift is None:
        np.exp(S, out=out)
    else:
        np.subtract(S, shift[:, None], out=out)  # eq. (14)
        np.exp(out, out=out)
    rows = np.arange(S.shape[0])
    exp_y = out[rows, y]
    out[rows, y] = 0  # eq. (30): the other classes summed apart (sums - exp_y would cancel)
    others = out @ contract.ones(S.shape[1], S.dtype)  # row sums by BLAS: the cheapest pass over the rows
    out[rows, y] = exp_y
    sums = others + exp_y
    out *= (scale / sums)[:, None]  # scale * P
    return sums, exp_y, others


def _loss_and_dscores(
    S: np.ndarray, y: np.ndarray, scale: float | np.ndarray, stable: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The sample losses ``L_i`` (N,), and ``dS = scale (P - Y)`` (eqs. 6, 14, 15, 54), block by block of rows.

    ``scale`` is the cotangent over the reduction's divisor, a float or one per
    row (eq. 54); it scales ``dS`` and never the losses. ``dS`` is the only (N, C)
    allocation: each block of rows is exponentiated with the shift 0, summed and
    scaled in place while it sits in cache (``_normalized_rows``). Rows where that
    shift is not provably as good as the max (``_shift_is_free``) are done again
    with the max shift; with the default ``stable=True`` that is the rare case.
    Then, on (N,) vectors, the sample losses and the label entries: ``scale`` is
    subtracted at ``[i, y_i]``, so ``P`` and the one-hot ``Y`` are never
    materialized. A masked class (``-inf``) is ``exp(-inf) = 0`` in every pass (eq. 56).
    """
    N, C = S.shape
    dS = np.empty_like(S)
    sums, exp_y, others = np.empty(N, S.dtype), np.empty(N, S.dtype), np.empty(N, S.dtype)
    shift = None
    # The stable form lets exp(S) overflow on purpose (then redoes the rows); the literal one warns as NumPy does.
    quiet = np.errstate(over="ignore", divide="ignore", invalid="ignore") if stable else nullcontext()
    with _row_broadcasts_unbuffered(S), quiet:
        for block in _row_blocks(N, C, S.itemsize):
            part = _normalized_rows(S[block], y[block], _of_rows(scale, block), None, dS[block])
            sums[block], exp_y[block], others[block] = part
        if stable and not _shift_is_free(sums, scale, S.dtype):
            shift = np.zeros(N, S.dtype)
            again = _rows_needing_the_shift(sums, scale, S.dtype)
            for block in _row_blocks(again.size, C, S.itemsize):
                rows = again[block]
                S_rows = S[rows]  # a copy: these rows, gathered
                row_max = S_rows.max(axis=1)
                part = _normalized_rows(S_rows, y[rows], _of_rows(scale, rows), row_max, S_rows)
                sums[rows], exp_y[rows], others[rows] = part
                dS[rows], shift[rows] = S_rows, row_max
        rows = np.arange(N)
        if stable:
            ratio = sums / exp_y  # 1 / p_iy, to one rounding
            losses = np.log(ratio)  # eq. (15) with the shift S_iy
            dS[rows, y] = -scale * (others / sums)  # eq. (30): p_iy - 1 without cancellation, Y never built
            # Past 1 / (smallest normal), exp_y is subnormal or the ratio overflowed, so log(ratio) lost
            # digits; the loss is then over 708 (float64) and eq. (15) with the row's own shift is exact.
            largest = 1 / _SMALLEST_NORMAL[S.dtype]
            if ratio.max() > largest:
                S_y = S[rows, y] if shift is None else S[rows, y] - shift
                losses = np.where(ratio <= largest, losses, np.log(sums) - S_y)
        else:
            losses = -np.log(exp_y / sums)  # eq. (2) as the post writes it
            dS[rows, y] -= scale
    return losses, dS


def _block_loss_and_dscores_with_options(
    S: np.ndarray,
    y: np.ndarray,
    scales: RowScales,
    options: LossOptions,
    stable: bool,
    dZ: np.ndarray,
    masked: bool = False,
) -> np.ndarray:
    """One block of rows with the options of eqs. (17)-(24): ``dZ`` written in place; returns each row's loss.

    ``dZ_i = g_i r_i (a_i p_i - q_i) + 2 z g_i u_i lse_i p_i`` (eqs. 24, 54): ``P``, scaled
    by ``g_i r_i a_i``, then the smoothing row ``(e/C) w`` subtracted by broadcasting and the
    label entries set by eq. (30), one scatter at ``[i, y_i]``. For integer labels no
    one-hot and no (N, C) target is built; soft targets are (N, C) already.
    The row's loss is ``r_i l_i + z u_i lse_i^2`` (eqs. 19-21, 55), in float64. ``masked``
    says whether the block may hold ``-inf`` (eq. 56): then the cap keeps it, and the soft
    targets' ``q . (Z - m)`` skips it (``q = 0`` there, and ``0 * -inf`` is NaN).
    """
    N, C = S.shape
    rows = np.arange(N)
    e, z, c = options.label_smoothing, options.z_loss, options.softcap
    w = options.weight
    tanh_S = None if c is None else np.tanh(S / c)
    Z = S if c is None else c * tanh_S  # eq. (17)
    if masked and c is not None:
        np.copyto(Z, S, where=S == -np.inf)  # eq. (56): the cap keeps a mask at -inf, not -c
    shift = Z.max(axis=1) if stable else np.zeros(N, S.dtype)
    np.subtract(Z, shift[:, None], out=dZ)  # eq. (14); becomes exp, then P, then dZ, in place
    if y.ndim == 2:  # eq. (18), soft targets
        q = (1 - e) * y + e / C
        if w is not None:
            q *= w
        a = q.sum(axis=1)
        q_dot_z = np.einsum("ij,ij->i", q, np.where(dZ > -np.inf, dZ, 0) if masked else dZ)
    else:  # eq. (18), integer labels: q_i = (1 - e) w_y e_y + (e / C) w, never built
        labels = scales.labels
        w_y = np.ones(N, S.dtype) if w is None else w[labels]
        a = (1 - e) * w_y + (e / C) * (C if w is None else w.sum())
        # An ignored row points at class 0, which may be masked (eq. 56): its -inf read as 0, since k_i = 0.
        # A kept label is never masked (the contract), so -inf at a label's place is only ever such a pointer.
        label_z = dZ[rows, labels]
        q_dot_z = (1 - e) * w_y * np.where(label_z > -np.inf, label_z, 0)
        if e:
            q_dot_z += (e / C) * (dZ.sum(axis=1) if w is None else dZ @ w)
    np.exp(dZ, out=dZ)
    if y.ndim == 2:
        sums = dZ.sum(axis=1)
    else:  # eq. (30): the other classes' sum apart from the label's term
        exp_y = dZ[rows, labels]
        dZ[rows, labels] = 0
        others = dZ.sum(axis=1)
        dZ[rows, labels] = exp_y
        sums = others + exp_y
    log_sums = np.log(sums)
    lse = shift + log_sums
    row_losses = scales.ce * (a * log_sums - q_dot_z).astype(np.float64)  # eqs. (19)-(20), in shifted form
    if z:
        row_losses += z * scales.z * np.square(lse, dtype=np.float64)  # eq. (21)
    dZ *= (1 / sums)[:, None]  # P
    # The two terms of eq. (24) apart: r_i (a_i p_i - q_i) may cancel to nothing, and a z-loss
    # term added to r_i a_i first would keep only about eps r_i a_i of its own digits.
    # The gradient's factors are g_i r_i and g_i u_i (eq. 54); the loss above took r_i and u_i.
    gr, gu = scales.grad_ce, scales.grad_z
    z_term = (2 * z * gu * lse)[:, None] * dZ if z else None
    dZ *= (gr * a)[:, None]
    if y.ndim == 2:
        dZ -= gr[:, None] * q
    else:
        if e:
            dZ -= (gr * (e / C))[:, None] * (np.ones(C, S.dtype) if w is None else w)
        q_y, rest = label_entry_weights(labels, options, C, S.dtype)
        dZ[rows, labels] = gr * rest * (exp_y / sums) - gr * q_y * (others / sums)  # eq. (31)
    if z_term is not None:
        dZ += z_term
    if tanh_S is not None:
        dZ *= 1 - np.square(tanh_S)  # eq. (17)'s chain factor, 0 at -inf (eq. 56)
    return row_losses


def _loss_and_dscores_with_options(
    S: np.ndarray,
    y: np.ndarray,
    reduction: str,
    options: LossOptions,
    stable: bool,
    grad_output: float | np.ndarray = 1.0,
) -> tuple[float | np.ndarray, np.ndarray]:
    """Loss and dS with the options of eqs. (17)-(24) and the cotangent (54), block by block of rows."""
    N, C = S.shape
    scales = row_scales(y, options, reduction, S.dtype, grad_output)
    # Only the cap and the soft targets' dot product need to know of -inf (eq. 56): one min pass, for them alone.
    masked = (options.softcap is not None or y.ndim == 2) and bool(S.min() == -np.inf)
    dZ = np.empty_like(S)
    losses = np.empty(N)
    with _row_broadcasts_unbuffered(S):
        for block in _row_blocks(N, C, S.itemsize):
            part = RowScales(
                scales.ce[block],
                scales.z[block],
                None if scales.labels is None else scales.labels[block],
                scales.undefined,
                scales.grad_ce[block],
                scales.grad_z[block],
            )
            losses[block] = _block_loss_and_dscores_with_options(
                S[block], y[block], part, options, stable, dZ[block], masked
            )
    return reduced_loss(losses, reduction, scales.undefined), dZ


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
    """Softmax cross-entropy loss and dL/dscores, vectorized, a cache-sized block of rows at a time.

    Loss eq. (4) from sample losses eq. (2) in log-sum-exp form (eq. 15);
    gradient eq. (6): ``dS = (P - Y) / N``, without the ``1/N`` for ``"sum"``.
    With options (class weights, ignore_index, label smoothing, soft targets,
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

    >>> from manual import tuned
    >>> loss, dS = tuned.softmax_loss([[0.0, 0.0], [0.0, 0.0]], [0, 1])
    >>> round(loss, 6), dS.tolist()
    (0.693147, [[-0.25, 0.25], [0.25, -0.25]])
    >>> loss, dS = tuned.softmax_loss([[0.0, 0.0], [0.0, 0.0]], [0, -100], ignore_index=-100)
    >>> round(loss, 6), dS.tolist()
    (0.693147, [[-0.5, 0.5], [0.0, 0.0]])
    """
    if options.plain and y.ndim == 1:
        n = scores.shape[0] if reduction == "mean" else 1  # eq. (4): "sum" and "none" have no 1/N
        losses, dS = _loss_and_dscores(scores, y, grad_output / n, stable)  # eq. (54): g / n, always multiplied
        return (losses if reduction == "none" else float(losses.sum(dtype=np.float64)) / n), dS
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
    >>> from manual import tuned
    >>> loss, dW = tuned.linear_loss(np.zeros((2, 2)), [[1.0, 2.0]], [1])
    >>> round(loss, 6), dW.tolist()
    (0.693147, [[0.5, -0.5], [1.0, -1.0]])
    """
    scale = 1.0 / X.shape[0] if reduction == "mean" else 1.0
    losses, dS = _loss_and_dscores(X @ W, y, scale, stable=True)
    data_loss = scale * float(losses.sum(dtype=np.float64))
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
    >>> from manual import tuned
    >>> params = {"W1": np.eye(2), "b1": np.zeros(2), "W2": np.eye(2), "b2": np.zeros(2)}
    >>> loss, grads = tuned.two_layer_loss(params, [[1.0, -1.0]], [0], reg=0.1)
    >>> round(loss, 6), grads["b2"].round(6).tolist()
    (0.513262, [-0.268941, 0.268941])
    """
    W1, W2 = params["W1"], params["W2"]
    Z1, H1, S = two_layer_forward(params, X)
    ones = np.ones(X.shape[0], X.dtype)
    losses, dS = _loss_and_dscores(S, y, 1.0 / X.shape[0], stable=True)
    data_loss = float(losses.sum(dtype=np.float64)) / X.shape[0]

    dW2 = H1.T @ dS + reg * W2  # eq. (8)
    db2 = ones @ dS  # eq. (9)
    dZ1 = (dS @ W2.T) * (Z1 > 0)  # eq. (10)
    dW1 = X.T @ dZ1 + reg * W1  # eq. (11)
    db1 = ones @ dZ1  # eq. (11)

    loss = data_loss + l2_penalty(reg, W1, W2)
    return loss, {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}


# ----------------------------------------------------------- linear cross-entropy, classes chunked
def _chunk_logits(
    X: np.ndarray, W: np.ndarray, bias: np.ndarray | None, k0: int, k1: int, buf: np.ndarray
) -> np.ndarray:
    """``S^(k) = X W^(k) + 1 b^(k)T`` (eq. 27) for classes ``[k0, k1)``, written into the front of ``buf``."""
    S = buf[: X.shape[0] * (k1 - k0)].reshape(X.shape[0], k1 - k0)  # contiguous, so matmul writes it directly
    np.matmul(X, W[:, k0:k1], out=S)
    if bias is not None:
        S += bias[k0:k1]
    return S


def _capped(S: np.ndarray, c: float | None, masked: np.ndarray | None) -> np.ndarray:
    """Eq. (17) in place: ``S`` becomes ``Z = c tanh(S / c)``; the ``masked`` columns stay ``-inf`` (eq. 56)."""
    if c is not None:
        S /= c
        np.tanh(S, out=S)
        S *= c
        if masked is not None:
            S[:, masked] = -np.inf  # tanh made them -c, a class that exists
    return S


class _Rows:
    """What eqs. (18)-(24) need of each row, from the labels and options alone: computed once, before any chunk."""

    def __init__(
        self,
        y: np.ndarray,
        options: LossOptions,
        reduction: str,
        V: int,
        dtype: np.dtype,
        grad_output: float | np.ndarray,
        bias: np.ndarray | None,
    ) -> None:
        self.scales = row_scales(y, options, reduction, dtype, grad_output)  # r, u; g r, g u (eq. 54)
        self.masked = None if bias is None or not np.isneginf(bias).any() else np.isneginf(bias)  # eq. (56)
        self.labels = self.scales.labels
        self.w_y, self.a = label_weights(self.labels, options, V, dtype)
        self.q_y, self.rest = label_entry_weights(self.labels, options, V, dtype)  # eq. (31)
        # The kept rows sorted by label: each chunk's labelled rows are a slice. An ignored row has no label
        # entry (its r_i is 0); left out, its pointer at class 0 never reads a masked logit (eq. 56).
        kept = np.flatnonzero(y != options.ignore_index) if options.ignore_index is not None else np.arange(len(y))
        order = kept[np.argsort(self.labels[kept], kind="stable")]
        self.order, self.sorted_labels = order, self.labels[order]
        self.options, self.V = options, V

    def masked_in(self, k0: int, k1: int) -> np.ndarray | None:
        """The masked columns (a ``bias`` of ``-inf``, eq. 56) of classes ``[k0, k1)``, or None when none is."""
        return None if self.masked is None or not self.masked[k0:k1].any() else self.masked[k0:k1]

    def in_chunk(self, k0: int, k1: int) -> tuple[np.ndarray, np.ndarray]:
        """The rows whose label lies in ``[k0, k1)``, and that label's column within the chunk."""
        lo, hi = np.searchsorted(self.sorted_labels, (k0, k1))
        return self.order[lo:hi], self.sorted_labels[lo:hi] - k0


def _online_lse(
    X: np.ndarray, W: np.ndarray, bias: np.ndarray | None, c: float | None, chunks: list, buf: np.ndarray, rows: _Rows
) -> tuple[np.ndarray, np.ndarray]:
    """Pass 1: ``lse_i`` by the online log-sum-exp of eq. (26), one (N x chunk) block of logits at a time.

    Also returns ``1 - p_iy`` by eq. (30): the running sum covers the classes other than the label
    (``s_not_y``), rescaled like eq. (26)'s ``s``; the label's logit is kept aside when its chunk passes.
    """
    N = X.shape[0]
    m = np.full(N, -np.inf, X.dtype)  # running max, over every class
    s_not_y = np.zeros(N, X.dtype)  # running sum of exp(Z_ij - m_i) over j != y_i
    Z_y = np.full(N, -np.inf, X.dtype)  # an ignored row's stays -inf: its every class is in s_not_y
    for k0, k1 in chunks:
        Z = _capped(_chunk_logits(X, W, bias, k0, k1, buf), c, rows.masked_in(k0, k1))
        hit, cols = rows.in_chunk(k0, k1)
        Z_y[hit] = Z[hit, cols]
        m_new = np.maximum(m, Z.max(axis=1))
        shift = finite_shift(m_new)  # eq. (56): a chunk of masked classes before any other has no max
        Z -= shift[:, None]
        np.exp(Z, out=Z)
        Z[hit, cols] = 0  # eq. (30): the label's term is not part of s_not_y
        s_not_y = s_not_y * np.exp(m - shift) + Z @ np.ones(k1 - k0, X.dtype)  # eq. (26): rescaled to the new max
        m = m_new
    return _lse_and_share_of_others(m, s_not_y, Z_y)


def _lse_and_share_of_others(m: np.ndarray, s_not_y: np.ndarray, Z_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``lse_i = m_i + log(s_not_y + exp(Z_iy - m_i))`` and ``1 - p_iy = s_not_y / (that sum)`` (eqs. 26, 30)."""
    s = s_not_y + np.exp(Z_y - m)
    return m + np.log(s), s_not_y / s


def _chunk_gradient(
    S: np.ndarray,
    k0: int,
    k1: int,
    lse: np.ndarray,
    not_y: np.ndarray,
    z_coef: np.ndarray | None,
    rows: _Rows,
    row_loss: np.ndarray,
) -> np.ndarray:
    """Chunk ``k``'s ``dS^(k)`` by eq. (24), in place of its logits ``S``; adds its share of eq. (19) to ``row_loss``.

    With the final ``lse``, ``Z - lse`` is ``log p`` (eq. 19's ``-log p_ij = lse_i - Z_ij``,
    each term >= 0, so the loss subtracts nothing large). Then, with ``r`` the cotangent times the
    row factor (``g_i r_i``, eq. 54),
    ``dZ = r a p - r (e/V) w - r (1-e) w_y [j = y_i] + z_coef p`` and the cap's factor (17): the z-loss
    term (``z_coef = 2 z g u lse``, None without z-loss) added last, apart from ``r a``, so that it keeps its
    digits where the cross-entropy part cancels. The label entries by eq. (30), from ``not_y = 1 - p_iy``.
    A masked column (eq. 56) stays ``-inf`` through the cap: ``p = 0``, and the cap's factor is 0 there.
    """
    e, c, w = rows.options.label_smoothing, rows.options.softcap, rows.options.weight
    r = rows.scales.grad_ce
    tanh_S = None
    if c is not None:
        tanh_S = np.tanh(S / c)
        np.multiply(tanh_S, c, out=S)  # eq. (17)
        masked = rows.masked_in(k0, k1)
        if masked is not None:
            S[:, masked] = -np.inf  # eq. (56): a mask stays -inf
    log_p = S
    log_p -= lse[:, None]
    if e:  # eq. (19), the smoothing share: (e/V) sum_j w_j (-log p_ij)
        row_loss -= (e / rows.V) * (log_p @ (np.ones(k1 - k0, S.dtype) if w is None else w[k0:k1]))
    hit, cols = rows.in_chunk(k0, k1)
    row_loss[hit] -= (1 - e) * rows.w_y[hit] * log_p[hit, cols]  # eq. (19), the label's share
    dZ = np.exp(log_p, out=log_p)  # p, then dZ, in place
    p_y = dZ[hit, cols]
    z_term = None if z_coef is None else z_coef[:, None] * dZ  # eq. (24), the z-loss term
    dZ *= (r * rows.a)[:, None]  # eq. (24), the p_i term of the cross-entropy
    if e:
        _subtract_outer(dZ, r * (e / rows.V), None if w is None else w[k0:k1])  # eq. (24), the smoothing row
    dZ[hit, cols] = r[hit] * rows.rest[hit] * p_y - r[hit] * rows.q_y[hit] * not_y[hit]  # eq. (31): one scatter
    if z_term is not None:
        dZ += z_term
    if tanh_S is not None:
        np.square(tanh_S, out=tanh_S)
        np.subtract(1, tanh_S, out=tanh_S)
        dZ *= tanh_S  # eq. (17)'s chain factor, 1 - tanh^2
    return dZ


def _subtract_outer(dZ: np.ndarray, g: np.ndarray, w: np.ndarray | None, rows: int = 256) -> None:
    """``dZ -= outer(g, w)`` in place (``w`` None: all ones), a slab of rows at a time: no (N x chunk) temporary."""
    if w is None:
        dZ -= g[:, None]
        return
    for i in range(0, dZ.shape[0], rows):
        dZ[i : i + rows] -= np.outer(g[i : i + rows], w)


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
    (N x chunk) block of logits at a time. Pass 2 recomputes each block, turns
    it into its ``dS^(k)`` by eq. (24) with the final ``lse`` (options of
    eqs. 17-24 included), and spends it at once (eq. 27): ``dX += dS^(k) W^(k)T``,
    ``dW[:, k] = X^T dS^(k)``, ``db[k] = 1^T dS^(k)``. Four matrix products in
    all instead of three; memory O(N x chunk). ``chunk_size`` counts classes
    (default: about 4M logits per block, a multiple of 128); one chunk as wide
    as V is the dense computation, three products. ``dW`` comes back as the
    transpose of a (V, D) array, so that each chunk's columns are one
    contiguous block.

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
    >>> from manual import tuned
    >>> loss, grads = tuned.linear_cross_entropy(np.ones((2, 1)), np.zeros((1, 3)), [0, 2], chunk_size=2)
    >>> round(loss, 6), grads["W"].round(6).tolist()
    (1.098612, [[-0.166667, 0.333333, -0.166667]])
    """
    N, V = X.shape[0], W.shape[1]
    width = class_chunk_width(N, V, chunk_size)
    chunks = [(k0, min(k0 + width, V)) for k0 in range(0, V, width)]
    rows = _Rows(y, options, reduction, V, X.dtype, grad_output, bias)
    z, c = options.z_loss, options.softcap
    buf = np.empty(N * width, X.dtype)  # the one (N x chunk) block of logits, reused by every chunk
    if len(chunks) == 1:  # the dense computation (25): lse by (15) from the logits, which pass 2 then reuses
        S = _chunk_logits(X, W, bias, 0, V, buf)
        Z = capped(S, c)  # eq. (17), -inf kept (eq. 56)
        m = Z.max(axis=1)
        E = np.exp(Z - m[:, None])
        every_row = np.arange(N)
        E[every_row, rows.labels] = 0  # eq. (30): the other classes' sum apart
        lse, not_y = _lse_and_share_of_others(m, E @ np.ones(V, X.dtype), Z[every_row, rows.labels])
    else:
        lse, not_y = _online_lse(X, W, bias, c, chunks, buf, rows)
    z_coef = 2 * z * rows.scales.grad_z * lse if z else None  # eqs. (24), (54): the z-loss term's coefficient
    row_loss = np.zeros(N, X.dtype)
    dX = np.zeros_like(X)
    dWT = np.empty((V, X.shape[1]), X.dtype)  # dW transposed: chunk k's columns are rows k0:k1, contiguous
    db = None if bias is None else np.empty(V, X.dtype)
    ones = np.ones(N, X.dtype)
    for k0, k1 in chunks:
        S = S if len(chunks) == 1 else _chunk_logits(X, W, bias, k0, k1, buf)
        dS = _chunk_gradient(S, k0, k1, lse, not_y, z_coef, rows, row_loss)
        dX += dS @ W[:, k0:k1].T  # eq. (27): dX is a sum over classes
        np.matmul(dS.T, X, out=dWT[k0:k1])  # eq. (27): dW[:, k] = X^T dS^(k), written once
        if db is not None:
            db[k0:k1] = ones @ dS  # eq. (27): db[k] = 1^T dS^(k)
    row_losses = rows.scales.ce * row_loss.astype(np.float64)  # eqs. (20), (55)
    if z:
        row_losses += z * rows.scales.z * np.square(lse, dtype=np.float64)  # eq. (21)
    grads = {"X": dX, "W": dWT.T} | ({} if db is None else {"b": db})
    return reduced_loss(row_losses, reduction, rows.scales.undefined), grads
