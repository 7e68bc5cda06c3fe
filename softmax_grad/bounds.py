"""Rounding-error bounds: how far a correct computation in a given dtype may land from the exact result.

Every function here is arithmetic on a case's inputs (its float64 values,
already rounded to the dtype under test), never a gradient under test: it
gives, entry by entry, the first-order error bound of docs/derivation.md
section 9 for an implementation that computes in ``dtype`` and accumulates in
``accumulation`` (float32 for bfloat16 and float16 kernels). A verdict then
asks ``|actual - exact| <= MULTIPLE * bound`` (``exceeds``), and reports the
ratio ``|actual - exact| / bound``.

The pieces, with their equation numbers:

* ``Precision``: the unit roundoffs ``u`` (storage) and ``u_a`` (accumulation),
  and ``gamma(n)``, the probabilistic ``sqrt(n) u_a`` of eq. (33);
* ``product_error``: the logits ``X W + b`` as computed, eq. (34);
* ``scores_bounds``: soft-capping, the shifted log-sum-exp and softmax, the
  label entry, the options, the reduction, eqs. (35)-(41);
* ``back_products``: ``dX = dS W^T``, ``dW = X^T dS``, ``db = 1^T dS``, eq. (42);
* ``linear_ce_bounds``, ``linear_bounds``, ``two_layer_bounds``: the kinds,
  eqs. (42)-(43);
* ``MULTIPLE``, ``ratio``, ``exceeds``: the verdict of eq. (44).

>>> import numpy as np
>>> S = np.array([[1000.0, 1001.0, 999.0]]); y = np.array([1])
>>> loss_bound, dS, dS_bound = scores_bounds(S, y, np.zeros_like(S), precision("float32"))
>>> bool(dS_bound.max() < 1e-4), bool(loss_bound > 1000 * 2.0**-24)
(True, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

# The verdict's one multiple: a correct implementation's error stays within it times the bound.
# Why 2 and not 1: the bound takes each exp, log and tanh as correctly rounded (error u), but
# vectorised math libraries are accurate to 1-2 ulps (JAX's float32 tanh near saturation is one ulp
# off, measured: 1.3 of a bound), and the probabilistic sqrt(n) of eq. (33) is a likely, not a
# certain, bound. Why not more: a 0.1% error must still fail on logits of magnitude 1000 in float32,
# where the bound is about 3e-4 of the entry (docs/derivation.md, worked example).
MULTIPLE = 2.0

UNIT_ROUNDOFF = {"float64": 2.0**-53, "float32": 2.0**-24, "bfloat16": 2.0**-8, "float16": 2.0**-11}
# What a kernel in each dtype accumulates in: bfloat16 and float16 kernels sum in float32.
ACCUMULATION = {"float64": "float64", "float32": "float32", "bfloat16": "float32", "float16": "float32"}
# The smallest normal number: below it a value loses its relative accuracy, or is flushed to 0 (XLA on CPU
# flushes subnormals: a float32 gradient entry of 1.5e-43 comes back 0), so it is every stored value's absolute floor.
SMALLEST_NORMAL = {"float64": 2.0**-1022, "float32": 2.0**-126, "bfloat16": 2.0**-126, "float16": 2.0**-14}
# The largest finite number: a correct result's intermediate past it is inf in that dtype (the z-loss's lse^2
# in float16 passes it at lse = 256, so logits about 1000 apart overflow it).
LARGEST = {"float64": 2.0**1023 * (2 - 2.0**-52), "float32": 2.0**127 * (2 - 2.0**-23),
           "bfloat16": 2.0**127 * (2 - 2.0**-7), "float16": 65504.0}  # fmt: skip
LOW_PRECISION = ("bfloat16", "float16")


@dataclass(frozen=True)
class Precision:
    """The unit roundoffs of a computation: ``u`` of the dtype it stores, ``ua`` of the one it accumulates in."""

    name: str
    u: float
    ua: float
    tiny: float

    def gamma(self, n: int | float) -> float:
        """Eq. (33): the probabilistic bound ``sqrt(n) u_a`` on a sum of ``n`` terms' relative error.

        >>> precision("float32").gamma(4) == 2 * 2.0**-24
        True
        """
        return math.sqrt(max(float(n), 1.0)) * self.ua

    def same_sign_gamma(self, n: int | float) -> float:
        """Eq. (32), not (33), for a sum of ``n`` positive terms (the softmax normaliser, smoothing's sum of weights).

        The independent, mean-zero rounding errors behind ``sqrt(n) u_a`` fail
        there: n nearly equal terms, or small terms added one by one to a larger
        partial sum, round the same way at every step. A vectorised reduction
        spreads that over its lanes; a loop that adds one term at a time does not,
        and is correct code too. So the worst case, ``(n - 1) u_a`` to first order.
        Measured (float32, C = 4799, label smoothing 0.1): the suite's per-element
        loop, about 1300 u_a relative; torch's cross-entropy, about 220 u_a;
        ``sqrt(n)`` gives 69 u_a.

        >>> round(precision("float32").same_sign_gamma(4799) / 2.0**-24)
        4798
        """
        n = max(float(n), 1.0)
        return max(math.sqrt(n), n - 1.0) * self.ua

    def worst_gamma(self, n: int | float) -> float:
        """Eq. (32): the worst-case ``gamma_n = n u / (1 - n u)`` (shown beside the probabilistic one, not used)."""
        nu = float(n) * self.ua
        return nu / (1.0 - nu) if nu < 1 else math.inf


def dtype_name(dtype: Any) -> str:
    """``"float32"``, ``"bfloat16"``...: the name of a NumPy, ml_dtypes or string dtype.

    >>> dtype_name(np.float32), dtype_name("bfloat16")
    ('float32', 'bfloat16')
    """
    name = dtype if isinstance(dtype, str) else np.dtype(dtype).name
    if name not in UNIT_ROUNDOFF:
        raise ValueError(f"dtype must be one of {list(UNIT_ROUNDOFF)}, got {name!r}")
    return name


def precision(dtype: Any) -> Precision:
    """The ``Precision`` of a computation in ``dtype`` (accumulating as ``ACCUMULATION`` says)."""
    name = dtype_name(dtype)
    return Precision(name, UNIT_ROUNDOFF[name], UNIT_ROUNDOFF[ACCUMULATION[name]], SMALLEST_NORMAL[name])


def stored(prec: Precision, value: np.ndarray) -> np.ndarray:
    """The error of storing ``value`` in the dtype: ``u |value|`` plus the smallest normal number (flush to zero)."""
    return prec.u * np.abs(value) + prec.tiny


def product_error(prec: Precision, A: np.ndarray, B: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """Eq. (34): the error of ``A @ B (+ bias)`` as computed, entrywise.

    ``gamma_{K+1} (|A| |B| + |bias|)`` for the accumulation, plus the rounding
    to the storage dtype when it is narrower than the accumulation.
    """
    terms = np.abs(A) @ np.abs(B) + (0.0 if bias is None else np.abs(bias))
    exact = A @ B + (0.0 if bias is None else bias)
    error = prec.gamma(A.shape[-1] + 1) * terms
    return error + (stored(prec, exact) if prec.u > prec.ua else 0.0)


def _targets(
    y: np.ndarray, C: int, weight: np.ndarray | None, ignore_index: Any, label_smoothing: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Eq. (18)'s coefficients ``c_ij`` (kept rows), the kept mask, and the hard labels (None for soft targets)."""
    N = y.shape[0]
    w = np.ones(C) if weight is None else np.asarray(weight, np.float64)
    e = float(label_smoothing)
    if y.ndim == 2:
        return (1 - e) * w * y + e / C * w, np.ones(N, bool), None
    kept = np.ones(N, bool) if ignore_index is None else (y != ignore_index)
    labels = np.where(kept, y, 0).astype(int)
    c = np.broadcast_to(e / C * w, (N, C)).copy()
    c[np.arange(N), labels] += (1 - e) * w[labels]
    return c * kept[:, None], kept, labels


def scores_bounds(
    S: np.ndarray,
    y: np.ndarray,
    eS: np.ndarray,
    prec: Precision,
    *,
    reduction: str = "mean",
    weight: np.ndarray | None = None,
    ignore_index: Any = None,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    grad_output: Any = None,
) -> tuple[Any, np.ndarray, np.ndarray]:
    """The loss's bound, the exact ``dS`` and its entrywise bound, for scores ``S`` known to within ``eS``.

    Eqs. (35)-(41): ``eS`` is the error of the scores as the implementation has
    them (0 when they are its input, ``product_error`` when it computed them).
    ``dS`` is returned (float64, from the same arithmetic) because the back
    products' bounds need its magnitude.

    ``reduction="none"`` gives the (N,) per-row losses' bounds (eq. 55).
    ``grad_output`` (eq. 54; None: 1) scales row i's gradient by ``g_i``: its
    bound by ``|g_i|``, plus the product's own rounding, so a row with
    ``g_i = 0`` has a gradient of exactly 0. A masked class (``S = -inf``,
    eq. 56) has ``p = 0`` and a gradient of exactly 0: bound 0, beside the
    smallest normal number.

    >>> S = np.array([[0.0, -30.0, -31.0]]); y = np.array([0])
    >>> _, dS, bound = scores_bounds(S, y, np.zeros_like(S), precision("float32"))
    >>> bool(bound[0, 0] < 1e-6), bool(bound[0, 1] < 1e-18)  # p_y - 1 by cancellation: u_a; the others relative
    (True, True)
    """
    S = np.asarray(S, np.float64)
    N, C = S.shape
    u, ua = prec.u, prec.ua
    c, kept, labels = _targets(np.asarray(y), C, weight, ignore_index, label_smoothing)
    masked = np.isneginf(S)  # eq. (56): out of every sum; its p, its gradient and their errors are 0
    if masked.any():
        S, eS = np.where(masked, 0.0, S), np.where(masked, 0.0, eS)
    # eq. (35): soft-capping; T and its error, g = 1 - tanh^2 and its error
    if softcap is None:
        T, eT = S, eS
        t = g = None
    else:
        t = np.tanh(S / softcap)
        T, g = softcap * t, 1.0 - t * t
        g = np.maximum(g, 0.0)
        eT = g * eS + 3 * ua * np.abs(T) + (u * np.abs(T) if u > ua else 0.0)
    safe = np.where(np.isfinite(T), T, 0.0)
    m = np.max(np.where(masked, -np.inf, safe), axis=1, keepdims=True)
    shifted = np.exp(np.where(masked, -np.inf, safe) - m)
    sums = shifted.sum(axis=1, keepdims=True)
    p = shifted / sums
    lse = (m + np.log(sums))[:, 0]
    # eq. (36): each logit's perturbation as the softmax sees it: its own error, the shift's, exp's, and the
    # normalizer's (a correct log-softmax may subtract lse, a number of the row's magnitude |m|)
    e = np.where(masked, 0.0, eT + ua * (np.abs(safe - m) + np.abs(m) + math.log(C) + 2))
    big = e.max(axis=1, keepdims=True)
    lse_error = np.minimum(big, np.exp(2 * big) * np.sum(p * e, axis=1, keepdims=True))  # eq. (37)
    P = p * np.expm1(e + lse_error)  # eq. (38): |delta p_j|
    a = c.sum(axis=1, keepdims=True)
    sensitivity = a * P
    if labels is not None:  # eq. (39): the label entry 1 - p_y = sum_{k != y} p_k, bounded relative to itself
        rows = np.arange(N)
        others = P.sum(axis=1) - P[rows, labels]
        sensitivity[rows, labels] = a[:, 0] * np.minimum(P[rows, labels], others)
    rounding = (prec.same_sign_gamma(C) + 4 * ua) * (a * p + c)
    dT_row = a * p - c  # the data term of one row, before the reduction's factor
    bound_row = sensitivity + rounding
    loss_rows = a[:, 0] * lse - np.sum(c * safe, axis=1)
    loss_row_bounds = a[:, 0] * lse_error[:, 0] + np.sum(c * e, axis=1)
    loss_row_bounds += (prec.same_sign_gamma(C) + 3 * ua) * (
        a[:, 0] * np.abs(lse) + np.sum(c * np.abs(safe), axis=1)
    )
    # eq. (40): the reduction: "mean" divides by the kept rows' label weights (N for soft targets)
    rows_only = reduction == "none"  # eq. (55): the row losses themselves, no sum over rows
    if reduction == "mean":
        w = np.ones(C) if weight is None else np.asarray(weight, np.float64)
        denominator = float(N if labels is None else np.sum(w[labels[kept]]))
        factor = 1.0 / denominator if denominator > 0 else 0.0  # no kept row: the loss is NaN, the gradient 0
        z_factor = 1.0 / max(int(kept.sum()), 1)
    else:
        factor = z_factor = 1.0
    dT = factor * dT_row
    bound = factor * bound_row + (0.0 if rows_only else prec.gamma(N)) * np.abs(dT)
    loss: Any = factor * float(np.sum(loss_rows[kept]))
    loss_bound: Any = factor * float(np.sum(loss_row_bounds[kept])) + prec.gamma(N) * factor * float(
        np.sum(np.abs(loss_rows[kept]))
    )
    if rows_only:
        loss, loss_bound = loss_rows * kept, loss_row_bounds * kept
    if z_loss > 0:  # eq. (41): z lse^2 per kept row; its gradient 2 z lse p
        zk = z_loss * z_factor * kept[:, None]
        lse_col = lse[:, None]
        dT = dT + 2 * zk * lse_col * p
        lse_err = lse_error + prec.same_sign_gamma(C) + 3 * ua * np.abs(lse_col)
        bound = bound + 2 * zk * (np.abs(lse_col) * P + p * lse_err) + 8 * ua * np.abs(zk * lse_col * p)
        z_rows, z_row_bounds = zk[:, 0] * lse**2, zk[:, 0] * (2 * np.abs(lse) * lse_err[:, 0] + 3 * ua * lse**2)
        loss = loss + (z_rows if rows_only else float(np.sum(z_rows)))
        loss_bound = loss_bound + (z_row_bounds if rows_only else float(np.sum(z_row_bounds)))
    if softcap is not None:  # eq. (35) again: dS = dT (1 - t^2), with the factor's own error
        dg = 2 * np.abs(t) * (g * eS / softcap + 3 * ua * np.abs(t)) + ua
        if u > ua:
            dg = dg + 2 * u * t * t
        dS = dT * g
        bound = g * bound + np.abs(dT) * dg
    else:
        dS = dT
    bound = bound + stored(prec, dS)
    if grad_output is not None:  # eq. (54): g_i scales the row's gradient; one more rounding, the product's
        g = np.asarray(grad_output, np.float64)
        g = g[:, None] if g.ndim else g
        dS, bound = g * dS, np.abs(g) * bound + stored(prec, g * dS)
    stored_loss = stored(prec, np.asarray(loss))
    loss_bound = loss_bound + (stored_loss * kept if rows_only else float(stored_loss))
    live = kept[:, None] & ~masked
    return loss_bound, dS * live, bound * live


def back_products(
    prec: Precision, A: np.ndarray, eA: np.ndarray, dS: np.ndarray, dS_bound: np.ndarray, W: np.ndarray
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Eq. (42): ``dA = dS W^T``, ``dW = A^T dS``, ``db = 1^T dS``, each with its bound.

    ``A`` is the layer's input (X, or H1) and ``eA`` its error as computed
    (0 for an input). Each bound carries ``dS``'s error through the product,
    the product's own accumulation, and the storage.
    """
    N, C = dS.shape
    dA = dS @ W.T
    dW = A.T @ dS
    db = dS.sum(axis=0)
    absW, absA, abs_dS = np.abs(W), np.abs(A), np.abs(dS)
    bound_dA = dS_bound @ absW.T + prec.gamma(C) * (abs_dS @ absW.T) + stored(prec, dA)
    bound_dW = absA.T @ dS_bound + np.abs(eA).T @ abs_dS + prec.gamma(N) * (absA.T @ abs_dS) + stored(prec, dW)
    bound_db = dS_bound.sum(axis=0) + prec.gamma(N) * abs_dS.sum(axis=0) + stored(prec, db)
    return {"dA": (dA, bound_dA), "dW": (dW, bound_dW), "db": (db, bound_db)}


def linear_ce_bounds(
    X: np.ndarray, W: np.ndarray, y: np.ndarray, bias: np.ndarray | None, prec: Precision, **options: Any
) -> dict[str, np.ndarray | float]:
    """Bounds of the loss and of ``X``, ``W`` (and ``b``) gradients of eq. (25): logits ``X W + b``."""
    S = X @ W + (0.0 if bias is None else bias)
    loss_bound, dS, dS_bound = scores_bounds(S, y, product_error(prec, X, W, bias), prec, **options)
    back = back_products(prec, X, np.zeros_like(X), dS, dS_bound, W)
    out: dict[str, np.ndarray | float] = {"loss": loss_bound, "X": back["dA"][1], "W": back["dW"][1]}
    if bias is not None:
        out["b"] = back["db"][1]
    return out


def linear_bounds(
    W: np.ndarray, X: np.ndarray, y: np.ndarray, reg: float, prec: Precision, **options: Any
) -> dict[str, np.ndarray | float]:
    """Bounds of the loss and ``dW`` of eq. (12) with the penalty ``reg/2 sum W^2`` (eq. 3; ``reg`` is eq. 3's)."""
    S = X @ W
    loss_bound, dS, dS_bound = scores_bounds(S, y, product_error(prec, X, W), prec, **options)
    dW, bound = back_products(prec, X, np.zeros_like(X), dS, dS_bound, W)["dW"]
    penalty = 0.5 * reg * float(np.sum(W * W))
    return {
        "loss": loss_bound + prec.gamma(W.size) * penalty + 3 * prec.u * penalty,
        "dW": bound + 3 * prec.u * np.abs(reg * W) + stored(prec, dW + reg * W),
    }


def two_layer_bounds(
    params: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray, reg: float, prec: Precision, **options: Any
) -> dict[str, np.ndarray | float]:
    """Eq. (43): the two-layer chain, ``Z1 = X W1 + b1``, ``H1 = relu(Z1)``, ``S = H1 W2 + b2``, and back.

    A pre-activation within its own error of 0 (but not exactly 0 with exact
    terms) may take either side of the ReLU's gate: its whole ``dH1`` entry is
    added to the bound there. ``reg`` is eq. (3)'s.
    """
    W1, b1, W2, b2 = (np.asarray(params[k], np.float64) for k in ("W1", "b1", "W2", "b2"))
    Z1 = X @ W1 + b1
    eZ1 = product_error(prec, X, W1, b1)
    H1 = np.maximum(Z1, 0.0)
    eH1 = np.where(Z1 >= -eZ1, eZ1, 0.0)
    S = H1 @ W2 + b2
    eS = eH1 @ np.abs(W2) + product_error(prec, H1, W2, b2)
    loss_bound, dS, dS_bound = scores_bounds(S, y, eS, prec, **options)
    second = back_products(prec, H1, eH1, dS, dS_bound, W2)
    dH1, dH1_bound = second["dA"]
    gate = Z1 > 0
    ambiguous = (np.abs(Z1) <= eZ1) & (eZ1 > 0)
    dZ1 = dH1 * gate
    dZ1_bound = dH1_bound * (gate | ambiguous) + np.abs(dH1) * ambiguous
    first = back_products(prec, X, np.zeros_like(X), dZ1, dZ1_bound, W1)
    penalty = 0.5 * reg * float(np.sum(W1 * W1) + np.sum(W2 * W2))
    return {
        "loss": loss_bound + prec.gamma(W1.size + W2.size) * penalty + 3 * prec.u * penalty,
        "W1": first["dW"][1] + 3 * prec.u * np.abs(reg * W1) + stored(prec, reg * W1),
        "b1": first["db"][1],
        "W2": second["dW"][1] + 3 * prec.u * np.abs(reg * W2) + stored(prec, reg * W2),
        "b2": second["db"][1],
    }


def ratio(actual: Any, expected: Any, bound: Any) -> float:
    """``max |actual - expected| / bound`` entrywise, as eq. (44) reports it; 0 where both are 0, else inf at bound 0.

    >>> ratio(np.array([1.0, 2.0]), np.array([1.0, 2.1]), np.array([1.0, 0.2]))
    0.5000000000000004
    """
    error = np.abs(np.asarray(actual, np.float64) - np.asarray(expected, np.float64))
    bound = np.broadcast_to(np.asarray(bound, np.float64), error.shape)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ratios = np.where(error == 0, 0.0, error / bound)
    return float(np.max(ratios, initial=0.0))


def exceeds(actual: Any, expected: Any, bound: Any, multiple: float = MULTIPLE) -> bool:
    """Whether ``actual`` is further from ``expected`` than ``multiple`` times ``bound`` anywhere: eq. (44) fails."""
    return ratio(actual, expected, bound) > multiple


def row_facts(S: np.ndarray, y: np.ndarray, large: float = 100.0, certain: float = 0.98) -> dict[str, np.ndarray]:
    """Per row: whether its logits are large (``max |s| >= large``), whether it is ``certain`` of its label, its
    label log-probability ``log_p_y`` and its log-sum-exp ``lse`` (eq. 15).

    What the diagnoses need to say where an error above its bound sits, and when a correct result leaves the
    dtype's range. ``certain`` sits below 0.99 so that
    the battery's rows at ``1 - p_y = 1e-2`` count, whichever way their p_y rounds.

    >>> facts = row_facts(np.array([[1000.0, 0.0], [0.0, 0.0]]), np.array([0, 1]))
    >>> facts["large"].tolist(), facts["certain"].tolist()
    ([True, False], [True, False])
    """
    S = np.asarray(S, np.float64)
    y = np.asarray(y)
    labels = np.where((y >= 0) & (y < S.shape[1]), y, 0).astype(int) if y.ndim == 1 else np.zeros(len(S), int)
    finite = np.where(np.isfinite(S) | np.isneginf(S), S, 0.0)  # a masked class (-inf) adds nothing below
    shifted = np.exp(finite - finite.max(axis=1, keepdims=True))
    p_y = shifted[np.arange(len(S)), labels] / shifted.sum(axis=1)
    log_p_y = finite[np.arange(len(S)), labels] - finite.max(axis=1) - np.log(shifted.sum(axis=1))
    return {
        "large": np.abs(np.where(np.isneginf(finite), 0.0, finite)).max(axis=1) >= large,
        "certain": p_y >= certain,
        "labels": labels,
        "log_p_y": np.where(y == labels, log_p_y, 0.0) if y.ndim == 1 else np.zeros(len(S)),
        "lse": finite.max(axis=1) + np.log(shifted.sum(axis=1)),
    }


OPTION_KEYS = ("weight", "ignore_index", "label_smoothing", "z_loss", "softcap")


def suite_bounds(function: str, args: tuple, kwargs: dict[str, Any], dtype: Any) -> dict[str, Any] | None:
    """The bounds of one call of a public function (``softmax_grad.cases``), named as ``cases.quantities`` names them.

    None for the functions the analysis does not cover here (``softmax``,
    ``softmax_jacobian``): their comparisons keep the table. The arguments are
    read as the float64 numbers they are.

    >>> S = np.zeros((2, 3), np.float32); y = np.array([0, 1])
    >>> sorted(suite_bounds("softmax_loss", (S, y), {}, np.float32))
    ['dS', 'loss']
    """
    prec = precision(dtype)

    def f64(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: np.asarray(item, np.float64) for key, item in value.items()}
        return np.asarray(value, np.float64) if np.asarray(value).dtype.kind == "f" else np.asarray(value)

    options = {key: kwargs[key] for key in OPTION_KEYS if kwargs.get(key) is not None}
    if "weight" in options:
        options["weight"] = np.asarray(options["weight"], np.float64)
    reduction = kwargs.get("reduction", "mean")
    if function == "softmax_loss":
        S, y = f64(args[0]), np.asarray(args[1])
        y = f64(y) if y.ndim == 2 else y
        loss, _, dS = scores_bounds(S, y, np.zeros_like(S), prec, reduction=reduction, **options)
        return {"loss": loss, "dS": dS}
    if function == "linear_loss":
        out = linear_bounds(f64(args[0]), f64(args[1]), np.asarray(args[2]), float(kwargs.get("reg", 0.0)), prec,
                            reduction=reduction)  # fmt: skip
        return {"loss": out["loss"], "dW": out["dW"]}
    if function == "two_layer_loss":
        out = two_layer_bounds(f64(args[0]), f64(args[1]), np.asarray(args[2]), float(kwargs.get("reg", 0.0)), prec)
        return {"loss": out["loss"], **{f"d{key}": out[key] for key in ("W1", "b1", "W2", "b2")}}
    if function == "linear_cross_entropy":
        bias = kwargs.get("bias")
        out = linear_ce_bounds(f64(args[0]), f64(args[1]), np.asarray(args[2]), None if bias is None else f64(bias),
                               prec, reduction=reduction, **options)  # fmt: skip
        return {f"d{key}" if key != "loss" else key: value for key, value in out.items()}
    return None
