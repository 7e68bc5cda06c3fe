"""What every NumPy variant reads off the loss options before its own formula: eq. (20)'s row scales.

The options themselves arrive validated (``softmax_grad.contract.LossOptions``);
this module turns them, with the labels, into the two per-row factors of
eq. (24), ``r_i`` (cross-entropy) and ``u_i`` (z-loss), which carry the
reduction, the ignored rows and the weighted mean's denominator. What differs
between the variants is how they use them.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from softmax_grad.contract import LossOptions


class RowScales(NamedTuple):
    """Eq. (20)-(21): ``dZ_i = r_i (a_i p_i - q_i) + 2 z u_i lse_i p_i`` (eq. 24), and its VJP (eq. 54).

    The loss reads ``ce`` and ``z``; the gradient reads ``grad_ce = g_i r_i`` and ``grad_z = g_i u_i``, the
    same factors times the cotangent ``g`` (eq. 54): ``g`` scales each row's gradient and never the loss.
    """

    ce: np.ndarray  # r_i, (N,): k_i / Dn for "mean", k_i for "sum" and "none"; 0 on ignored rows
    z: np.ndarray  # u_i, (N,): k_i / K for "mean", k_i for "sum" and "none"
    labels: np.ndarray | None  # integer labels with ignored rows pointed at class 0 (their r_i is 0); None for soft
    undefined: bool  # "mean" over a zero total weight: the loss is NaN, the gradient zero (eq. 20)
    grad_ce: np.ndarray  # g_i r_i, (N,): the cross-entropy factor of the gradient (eq. 54)
    grad_z: np.ndarray  # g_i u_i, (N,): the z-loss factor of the gradient (eq. 54)


def row_scales(
    y: np.ndarray, options: LossOptions, reduction: str, dtype: np.dtype, grad_output: float | np.ndarray = 1.0
) -> RowScales:
    """``r``, ``u`` of eq. (24) for labels (N,) or soft targets (N, C), in ``dtype``, and ``g r``, ``g u`` (eq. 54).

    ``grad_output`` is the loss's cotangent: a float for "mean" and "sum", an (N,) array for "none" (eq. 55's
    per-row losses take the "sum" factors: nothing is divided). Multiplied in always, whatever its value.

    >>> from softmax_grad.contract import LossOptions
    >>> scales = row_scales(np.array([2, -100, 0]), LossOptions(ignore_index=-100), "mean", np.float64)
    >>> scales.ce.tolist(), scales.labels.tolist()
    ([0.5, 0.0, 0.5], [2, 0, 0])
    >>> row_scales(np.array([2, -100, 0]), LossOptions(ignore_index=-100), "none", np.float64,
    ...            np.array([3.0, 5.0, -1.0])).grad_ce.tolist()
    [3.0, 0.0, -1.0]
    """
    N = y.shape[0]
    if y.ndim == 2:  # soft targets: every row kept, "mean" divides by N (eq. 20)
        kept = np.ones(N)
        total = float(N)
        labels = None
    else:
        kept = np.ones(N) if options.ignore_index is None else (y != options.ignore_index).astype(np.float64)
        labels = np.where(kept > 0, y, 0)
        w_y = kept if options.weight is None else kept * options.weight[labels]
        total = float(np.sum(w_y, dtype=np.float64))  # eq. (20): Dn = sum of the kept rows' label weights
    count = float(kept.sum())
    if reduction == "mean":
        ce = (kept / total if total > 0 else np.zeros(N)).astype(dtype)
        z = (kept / count if count > 0 else np.zeros(N)).astype(dtype)
    else:  # "sum", and "none" whose rows are the sum's terms (eq. 55)
        ce = z = kept.astype(dtype)
    return RowScales(ce, z, labels, reduction == "mean" and total == 0, grad_output * ce, grad_output * z)


def reduced_loss(row_losses: np.ndarray, reduction: str, undefined: bool) -> float | np.ndarray:
    """The loss from its rows ``r_i l_i + z u_i lse_i^2`` (eqs. 20, 21): their sum, or for "none" the rows (55).

    The sum is taken in float64 whatever the rows' dtype; "mean" over a zero total weight is NaN (eq. 20).

    >>> reduced_loss(np.array([0.5, 0.25]), "sum", False), reduced_loss(np.array([0.5, 0.25]), "none", False)
    (0.75, array([0.5 , 0.25]))
    """
    if reduction == "none":
        return row_losses
    return float("nan") if undefined else float(np.sum(row_losses, dtype=np.float64))


def capped(S: np.ndarray, c: float | None) -> np.ndarray:
    """Eq. (17), ``Z = c tanh(S / c)``, keeping a masked class at ``-inf`` (eq. 56): ``tanh`` would make it ``-c``.

    >>> capped(np.array([0.0, -np.inf, 3.0]), 1.0).round(4).tolist()
    [0.0, -inf, 0.9951]
    """
    if c is None:
        return S
    return np.where(S == -np.inf, S, c * np.tanh(S / c))


def finite_shift(m: np.ndarray) -> np.ndarray:
    """A running max (eq. 26) made usable as a shift: 0 where no class has been seen (every one masked so far).

    ``exp(Z - m)`` with ``Z = m = -inf`` is ``exp(NaN)``; with the shift 0 it is ``exp(-inf) = 0`` (eq. 56).

    >>> finite_shift(np.array([-np.inf, 2.0])).tolist()
    [0.0, 2.0]
    """
    return np.where(m == -np.inf, 0, m)


# An (N x chunk) block of about 4M logits (16 MiB in float32): small beside the (N x V) logits at
# vocabulary scale, large enough that each chunk's matrix products run at full speed.
CHUNK_ELEMENTS = 1 << 22


def class_chunk_width(N: int, V: int, chunk_size: int | None) -> int:
    """Classes per chunk for eqs. (26)-(27): ``chunk_size``, or by default a multiple of 128 near 4M / N.

    At most V: a chunk as wide as the classes is the dense computation (25).

    >>> class_chunk_width(2048, 32768, None), class_chunk_width(8, 10, None), class_chunk_width(8, 10, 7)
    (2048, 10, 7)
    """
    if chunk_size is None:
        chunk_size = max(128, CHUNK_ELEMENTS // N // 128 * 128)
    return min(chunk_size, V)


def label_weights(labels: np.ndarray, options: LossOptions, C: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """``w_{y_i}`` and ``a_i = (1-e) w_{y_i} + (e/C) sum_j w_j`` of eq. (18), integer labels, as (N,) arrays."""
    e, w = options.label_smoothing, options.weight
    w_y = np.ones(labels.shape[0], dtype) if w is None else w[labels]
    return w_y, (1 - e) * w_y + (e / C) * float(C if w is None else w.sum(dtype=np.float64))


def label_entry_weights(
    labels: np.ndarray, options: LossOptions, C: int, dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray]:
    """``q_{i y_i}`` and ``a_i - q_{i y_i}`` of eq. (31), integer labels, as (N,) arrays.

    ``q_{i y_i} = ((1-e) + e/C) w_{y_i}`` and ``a_i - q_{i y_i} = (e/C) sum_{j != y_i} w_j``, the second
    formed directly: ``a_i - q_{i y_i}`` by subtraction would cancel when ``e`` is small.

    >>> from softmax_grad.contract import LossOptions
    >>> q_y, rest = label_entry_weights(np.array([1]), LossOptions(label_smoothing=0.3), 3, np.float64)
    >>> q_y.round(6).tolist(), rest.round(6).tolist()
    ([0.8], [0.2])
    """
    e, w = options.label_smoothing, options.weight
    w_y = np.ones(labels.shape[0], dtype) if w is None else w[labels]
    others = (C - 1) * np.ones_like(w_y) if w is None else float(w.sum(dtype=np.float64)) - w_y
    return ((1 - e) + e / C) * w_y, ((e / C) * others).astype(dtype, copy=False)
