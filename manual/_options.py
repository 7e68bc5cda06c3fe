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
    """Eq. (20)-(21): ``dZ_i = r_i (a_i p_i - q_i) + 2 z u_i lse_i p_i`` (eq. 24)."""

    ce: np.ndarray  # r_i, (N,): k_i / Dn for "mean", k_i for "sum"; 0 on ignored rows
    z: np.ndarray  # u_i, (N,): k_i / K for "mean", k_i for "sum"
    labels: np.ndarray | None  # integer labels with ignored rows pointed at class 0 (their r_i is 0); None for soft
    undefined: bool  # "mean" over a zero total weight: the loss is NaN, the gradient zero (eq. 20)


def row_scales(y: np.ndarray, options: LossOptions, reduction: str, dtype: np.dtype) -> RowScales:
    """``r``, ``u`` of eq. (24) for labels (N,) or soft targets (N, C), in ``dtype``.

    >>> from softmax_grad.contract import LossOptions
    >>> scales = row_scales(np.array([2, -100, 0]), LossOptions(ignore_index=-100), "mean", np.float64)
    >>> scales.ce.tolist(), scales.labels.tolist()
    ([0.5, 0.0, 0.5], [2, 0, 0])
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
    if reduction == "sum":
        return RowScales(kept.astype(dtype), kept.astype(dtype), labels, False)
    ce = kept / total if total > 0 else np.zeros(N)
    z = kept / count if count > 0 else np.zeros(N)
    return RowScales(ce.astype(dtype), z.astype(dtype), labels, total == 0)


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
