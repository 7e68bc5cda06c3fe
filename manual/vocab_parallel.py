"""Vocabulary-parallel linear cross-entropy in NumPy: the collectives of derivation section 10, one line each.

A teaching form, not a registered variant. The classes are split into
``devices`` column blocks, as tensor-parallel training splits them over the
devices of a vocabulary axis: block ``v`` holds ``W[:, start:stop]`` and the
same slice of ``bias`` and the class weights. Each device's work is a list
comprehension over the blocks, and each collective is a named reduction over
that list (``all_reduce_max``, ``all_reduce_sum``): the value it returns is the
one every device holds after the all-reduce. Nothing here ever holds the
(N, V) logits in one piece; the concatenation of the ``dW`` blocks at the end
is only for returning them in the suite's common form.

>>> import numpy as np
>>> from manual import vocab_parallel
>>> loss, grads = vocab_parallel.linear_cross_entropy(np.ones((2, 1)), np.zeros((1, 3)), [0, 2], devices=2)
>>> round(loss, 6), grads["W"].round(6).tolist()
(1.098612, [[-0.166667, 0.333333, -0.166667]])
"""

from __future__ import annotations

import functools
import operator
from typing import Any

import numpy as np

from manual._options import capped, reduced_loss
from softmax_grad.contract import LossOptions, linear_cross_entropy_entry

__all__ = ["all_reduce_max", "all_reduce_sum", "column_blocks", "linear_cross_entropy"]


def column_blocks(V: int, devices: int) -> list[tuple[int, int]]:
    """The ``[start, stop)`` classes of each device: ``devices`` blocks, sizes differing by at most one.

    >>> column_blocks(10, 3)
    [(0, 4), (4, 7), (7, 10)]
    """
    sizes = [V // devices + (v < V % devices) for v in range(devices)]
    stops = np.cumsum(sizes).tolist()
    return [(stop - size, stop) for size, stop in zip(sizes, stops, strict=True)]


def all_reduce_max(parts: list[np.ndarray]) -> np.ndarray:
    """The entrywise max of every device's part: what each device holds after an all-reduce max."""
    return functools.reduce(np.maximum, parts)


def all_reduce_sum(parts: list[Any]) -> Any:
    """The sum of every device's part: what each device holds after an all-reduce sum."""
    return functools.reduce(operator.add, parts)


def _on_blocks(
    X: np.ndarray,
    W: np.ndarray,
    y: np.ndarray,
    *,
    bias: np.ndarray | None,
    reduction: str,
    options: LossOptions,
    grad_output: float | np.ndarray,
    chunk_size: int | None,
    devices: int,
) -> tuple[float | np.ndarray, dict[str, np.ndarray]]:
    """Eqs. (45)-(53) over ``devices`` column blocks; ``chunk_size`` is accepted and unused (one chunk a block).

    The cotangent ``g`` multiplies the row factors of the gradient (eq. 54), a row's own value on every
    device; "none" returns the rows of eq. (55). A ``bias`` of ``-inf`` masks a class (eq. 56).
    """
    N, V = X.shape[0], W.shape[1]
    e, z, c = options.label_smoothing, options.z_loss, options.softcap
    blocks = column_blocks(V, devices)
    w = np.ones(V, X.dtype) if options.weight is None else options.weight
    b = np.zeros(V, X.dtype) if bias is None else bias
    W_v = [W[:, start:stop] for start, stop in blocks]  # what device v holds
    b_v = [b[start:stop] for start, stop in blocks]
    w_v = [w[start:stop] for start, stop in blocks]

    S_v = [X @ W_k + b_k for W_k, b_k in zip(W_v, b_v, strict=True)]  # eq. (45)
    Z_v = [capped(S, c) for S in S_v]  # eq. (45): the cap is local; a mask stays -inf (eq. 56)
    m = all_reduce_max([Z.max(axis=1) for Z in Z_v])  # eq. (46): one shift for every device
    s = all_reduce_sum([np.exp(Z - m[:, None]).sum(axis=1) for Z in Z_v])  # eq. (46)
    lse = m + np.log(s)

    kept = np.ones(N, bool) if options.ignore_index is None else y != options.ignore_index
    labels = np.where(kept, y, 0)  # an ignored row points at class 0; its r_i is 0
    rows = np.arange(N)
    # The owner mask of eq. (47); an ignored row has no owner, so its pointer at class 0 reads no mask (eq. 56).
    owns = [kept & (start <= labels) & (labels < stop) for start, stop in blocks]
    at = [np.clip(labels - start, 0, stop - start - 1) for start, stop in blocks]  # the label's column in each block
    Z_y = all_reduce_sum([np.where(own, Z[rows, j], 0) for own, Z, j in zip(owns, Z_v, at, strict=True)])  # eq. (47)
    w_y = all_reduce_sum([np.where(own, w_k[j], 0) for own, w_k, j in zip(owns, w_v, at, strict=True)])  # eq. (47)
    w_total = all_reduce_sum([w_k.sum() for w_k in w_v])  # eq. (48): the class weights of the whole vocabulary
    # eq. (48); a masked class (-inf) has w_j (lse - Z_ij) = inf, but then e = 0 (eq. 56): no smoothing to sum
    smoothing = all_reduce_sum([(lse[:, None] - Z) @ w_k for Z, w_k in zip(Z_v, w_v, strict=True)]) if e else 0.0
    a = (1 - e) * w_y + (e / V) * w_total  # eq. (48): divided by the global V, not a block's size
    row_loss = (1 - e) * w_y * (lse - Z_y) + (e / V) * smoothing  # eq. (50), summed over the blocks

    D_n, K = float(np.sum(np.where(kept, w_y, 0), dtype=np.float64)), int(kept.sum())  # eq. (49), one batch shard
    if reduction != "mean":  # "sum", and "none" whose rows are the sum's terms (eq. 55)
        r = u = kept.astype(X.dtype)
    else:
        r = (kept / D_n if D_n > 0 else np.zeros(N)).astype(X.dtype)  # eq. (20); 0 when D_n = 0
        u = (kept / K if K > 0 else np.zeros(N)).astype(X.dtype)  # eq. (21)
    row_losses = r * row_loss.astype(np.float64) + z * u * np.square(lse, dtype=np.float64)  # eqs. (50), (55)
    g = np.broadcast_to(np.asarray(grad_output, X.dtype), (N,))  # eq. (54): each row's cotangent, on every device
    r, u = g * r, g * u  # from here on the gradient's row factors

    dS_v = []
    for S, Z, w_k, own, j in zip(S_v, Z_v, w_v, owns, at, strict=True):  # eq. (51): each device alone
        P = np.exp(Z - lse[:, None])
        Y = own[:, None] & (j[:, None] == np.arange(Z.shape[1]))  # the label's column, on its owner only
        dZ = (r * a)[:, None] * P - (r * e / V)[:, None] * w_k - (r * (1 - e) * w_y)[:, None] * Y
        dZ = dZ + (2 * z * u * lse)[:, None] * P  # eq. (51): the z-term, from the global lse
        dS_v.append(dZ if c is None else dZ * (1 - np.square(np.tanh(S / c))))  # eq. (51): the cap's local factor
    dW_v = [X.T @ dS for dS in dS_v]  # eq. (52): local
    db_v = [dS.sum(axis=0) for dS in dS_v]  # eq. (52): local
    dX = all_reduce_sum([dS @ W_k.T for dS, W_k in zip(dS_v, W_v, strict=True)])  # eq. (53)

    grads = {"X": dX, "W": np.concatenate(dW_v, axis=1)} | ({} if bias is None else {"b": np.concatenate(db_v)})
    return reduced_loss(row_losses, reduction, reduction == "mean" and D_n == 0), grads


def linear_cross_entropy(
    X: Any, W: Any, y: Any, *, devices: int = 2, **keywords: Any
) -> tuple[float, dict[str, np.ndarray]]:
    """Linear cross-entropy (eq. 25) with the classes split over ``devices`` column blocks, eqs. (45)-(53).

    Every option of eqs. (17)-(24) (``bias``, ``reduction`` including
    ``"none"``, the cotangent ``grad_output`` of eq. (54), ``weight``,
    ``ignore_index``, ``label_smoothing``, ``z_loss``, ``softcap``), checked
    as in every variant; the result equals the unsharded one to rounding.
    ``devices`` may leave V indivisible (blocks differ by one class) but not
    exceed it: every device holds at least one class.

    >>> import numpy as np
    >>> loss, grads = linear_cross_entropy(np.ones((2, 1)), np.zeros((1, 3)), [0, 2], devices=3, label_smoothing=0.3)
    >>> round(loss, 6), grads["X"].round(6).tolist()
    (1.098612, [[0.0], [0.0]])
    """
    if isinstance(devices, bool) or not isinstance(devices, int | np.integer) or devices < 1:
        raise ValueError(f"devices must be a positive integer, got {devices!r}")
    V = np.shape(W)[1] if np.ndim(W) == 2 else None
    if V is not None and devices > V:
        raise ValueError(f"devices={devices} exceeds the V = {V} classes: a device would hold no class")
    entry = linear_cross_entropy_entry(functools.partial(_on_blocks, devices=int(devices)))
    return entry(X, W, y, **keywords)
