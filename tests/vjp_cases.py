"""Cases for the backward as a vector-Jacobian product (derivation eqs. 54-56), and how a float32 result is judged.

``vjp_cases()`` holds ``softmax_loss`` and ``linear_cross_entropy`` calls with
``reduction="none"`` and a random cotangent (mixed signs and zeros), "mean"
and "sum" with a scalar cotangent other than 1, and masked classes (``-inf``
scores or bias): padding columns, per-row masks, a row whose only class left
is its label, every option that may meet a mask. ``compare_vjp`` judges a
result as ``softmax_grad.cases.compare_results`` does, but with bounds that
know the cotangent: a float32 result against autodiff is held to the
rounding-error bounds of ``softmax_grad.bounds`` (eqs. 35-42) for the "sum"
reduction, each row's gradient bound times ``|g_i|`` (eq. 54) and each row's
loss bounded alone ("none"); masked columns are dropped first (they add
nothing to a correct computation, eq. 56) and must come out 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from softmax_grad import bounds
from softmax_grad.cases import Case, compare_outputs, quantities
from softmax_grad.compare import Comparison
from softmax_grad.tolerances import AUTODIFF, tolerance

INF = np.inf


def cotangent(n: int, seed: int) -> np.ndarray:
    """An (N,) cotangent: rows 0, 3, 6... get 0, rows 1, 4... a negative, rows 2, 5... a positive, of sizes 0.1 to 3."""
    rng = np.random.default_rng(seed + 4000)
    g = rng.choice([-1.0, 1.0], n) * rng.uniform(0.1, 3.0, n)
    g[::3] = 0.0
    g[1::3] = -np.abs(g[1::3])
    g[2::3] = np.abs(g[2::3])
    return g


SCALAR_COTANGENTS = {"mean": -1.75, "sum": 0.375}  # neither 1 nor a power of 2 that rounding would hide


def _scores(n: int, c: int, seed: int) -> np.ndarray:
    return 2.0 * np.random.default_rng(seed).standard_normal((n, c))


def _labels(n: int, c: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed + 1000).integers(0, c, n)


def _weights(c: int, seed: int) -> np.ndarray:
    return 0.2 + 2.8 * np.random.default_rng(seed + 3000).random(c)


def padded(S: np.ndarray, pad: int) -> np.ndarray:
    """``S`` with ``pad`` masked classes (``-inf`` columns) appended: a vocabulary padded to a multiple."""
    return np.concatenate([S, np.full((S.shape[0], pad), -INF)], axis=1)


def row_masked() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores (6, 6) with a different mask in each row (constrained decoding), labels on kept classes, soft targets.

    Row 2 keeps only its label's class (its loss is 0, its gradient 0, and the
    log-sum-exp over the other classes has no term); row 5 masks nothing.
    """
    S = _scores(6, 6, seed=90)
    mask = np.zeros((6, 6), bool)
    mask[0, [1, 4]] = True
    mask[1, 0] = True
    mask[2, [0, 1, 2, 4, 5]] = True
    mask[3, 3:] = True
    mask[4, [0, 5]] = True
    S[mask] = -INF
    y = np.array([0, 3, 3, 1, 2, 5])
    T = np.random.default_rng(91).random((6, 6)) ** 2
    T[mask] = 0.0
    T /= T.sum(axis=1, keepdims=True)
    return S, y, T


def vjp_cases() -> list[Case]:
    """The standard cases of eqs. (54)-(56); every ``-inf`` keeps targets, labels and smoothing off it."""
    N, C = 7, 5
    S, y, w = _scores(N, C, 80), _labels(N, C, 80), _weights(C, 80)
    ignored = y.copy()
    ignored[[1, 4]] = -100
    soft = np.random.default_rng(81).random((N, C)) ** 2
    soft[2] = 0.0  # a padding row of soft targets: loss 0 whatever its cotangent
    every = {"weight": w, "ignore_index": -100, "label_smoothing": 0.1, "z_loss": 0.05, "softcap": 3.0}
    g = cotangent(N, 80)
    cases = [
        Case("none", "softmax_loss", (S, y), {"reduction": "none", "grad_output": g}),
        Case("none, every option", "softmax_loss", (S, ignored), {"reduction": "none", "grad_output": g, **every}),
        Case("none, soft targets", "softmax_loss", (S, soft),
             {"reduction": "none", "grad_output": g, "weight": w, "label_smoothing": 0.3, "z_loss": 0.05}),
        Case("none, every row ignored", "softmax_loss", (S, np.full(N, -100)),
             {"reduction": "none", "grad_output": g, "ignore_index": -100, "z_loss": 0.1}),
    ]  # fmt: skip
    for reduction, scalar in SCALAR_COTANGENTS.items():
        cases.append(Case(f"{reduction}, g={scalar}", "softmax_loss", (S, ignored),
                          {"reduction": reduction, "grad_output": scalar, **every}))  # fmt: skip
    # masked classes: a vocabulary padded by 3, with every option a mask allows (no smoothing, eq. 56)
    masked_options = {"weight": np.concatenate([w, [1.0, 2.0, 0.5]]), "ignore_index": -100, "z_loss": 0.05}
    S_pad = padded(S, 3)
    cases += [
        Case("padded, options, softcap", "softmax_loss", (S_pad, ignored),
             {"reduction": "none", "grad_output": g, **masked_options, "softcap": 2.0}),
        Case("padded, mean", "softmax_loss", (S_pad, ignored),
             {"reduction": "mean", "grad_output": SCALAR_COTANGENTS["mean"], **masked_options, "softcap": 2.0}),
        Case("padded, soft targets", "softmax_loss", (S_pad, np.concatenate([soft, np.zeros((N, 3))], axis=1)),
             {"reduction": "sum", "grad_output": SCALAR_COTANGENTS["sum"], "z_loss": 0.05, "softcap": 2.0}),
    ]  # fmt: skip
    R, labels, T = row_masked()
    g6 = cotangent(6, 90)
    cases += [
        Case("row masks, options, softcap", "softmax_loss", (R, labels),
             {"reduction": "none", "grad_output": g6, "weight": _weights(6, 90), "z_loss": 0.05, "softcap": 1.5}),
        Case("row masks, soft targets", "softmax_loss", (R, T),
             {"reduction": "mean", "grad_output": SCALAR_COTANGENTS["mean"], "z_loss": 0.05, "softcap": 1.5}),
        Case("row masks, large logits", "softmax_loss", (np.where(R > -INF, 300.0 * R, -INF), labels),
             {"reduction": "none", "grad_output": g6, "z_loss": 1e-4}),
    ]  # fmt: skip
    return cases + linear_cross_entropy_vjp_cases()


def linear_cross_entropy_vjp_cases() -> list[Case]:
    """Small dense and chunked (chunk 4 of V = 9) cases; a ``-inf`` bias masks its class for every row."""
    N, D, V = 6, 3, 9
    rng = np.random.default_rng(95)
    X, W, b = rng.standard_normal((N, D)), rng.standard_normal((D, V)), 0.5 * rng.standard_normal(V)
    y = _labels(N, 6, 95)  # classes 6-8 stay free to be masked
    y[2] = -100
    g = cotangent(N, 95)
    masked_b = b.copy()
    masked_b[[6, 7, 8]] = -INF
    options = {"weight": _weights(V, 95), "ignore_index": -100, "z_loss": 0.05}
    return [
        Case("none", "linear_cross_entropy", (X, W, y),
             {"bias": b, "reduction": "none", "grad_output": g, "chunk_size": 4, **options,
              "label_smoothing": 0.2, "softcap": 1.5}),
        Case("mean, no bias", "linear_cross_entropy", (X, W, y),
             {"reduction": "mean", "grad_output": SCALAR_COTANGENTS["mean"], "chunk_size": None, **options}),
        Case("masked bias", "linear_cross_entropy", (X, W, y),
             {"bias": masked_b, "reduction": "none", "grad_output": g, "chunk_size": 4, **options, "softcap": 1.5}),
        Case("masked bias, sum", "linear_cross_entropy", (X, W, y),
             {"bias": masked_b, "reduction": "sum", "grad_output": SCALAR_COTANGENTS["sum"], "chunk_size": 4,
              "ignore_index": -100}),
    ]  # fmt: skip


# ------------------------------------------------------------------ judging
OPTION_KEYS = bounds.OPTION_KEYS


def _kept_columns(mask: np.ndarray) -> np.ndarray | None:
    """The columns no row masks, when every masked column is masked in every row (padding); else None."""
    columns = mask.any(axis=0)
    return ~columns if np.array_equal(mask, np.broadcast_to(columns, mask.shape)) else None


def _relabel(y: np.ndarray, keep: np.ndarray, ignore_index: Any) -> np.ndarray:
    """Labels as indices into the kept columns (an ignored row keeps its label)."""
    if y.ndim == 2:
        return y[:, keep]
    position = np.cumsum(keep) - 1
    kept = np.ones(y.shape, bool) if ignore_index is None else y != ignore_index
    return np.where(kept, position[np.where(kept, y, 0)], y)


def _scaled_row_bounds(S, y, eS, prec, reduction, options, g) -> tuple[Any, np.ndarray, np.ndarray]:
    """``scores_bounds`` with the cotangent: gradient bound rows times ``|g_i|``; "none": each row's loss alone."""
    base = "sum" if reduction == "none" else reduction
    loss_bound, dS, dS_bound = bounds.scores_bounds(S, y, eS, prec, reduction=base, **options)
    rows = np.broadcast_to(np.asarray(g, np.float64), (S.shape[0],))
    if reduction == "none":
        loss_bound = np.array([
            bounds.scores_bounds(S[i : i + 1], y[i : i + 1], eS[i : i + 1], prec, reduction="sum", **options)[0]
            for i in range(S.shape[0])
        ])  # fmt: skip
    return loss_bound, dS * rows[:, None], dS_bound * np.abs(rows)[:, None] + bounds.stored(prec, dS * rows[:, None])


def vjp_bounds(case: Case) -> dict[str, Any] | None:
    """The float32 bounds of a case of ``vjp_cases``, named as ``quantities`` names them; None where not covered.

    Not covered: masks that differ from row to row (the bounds of section 9
    read ``-inf`` as no class at all only after the column is dropped); those
    cases keep the tolerance table.
    """
    prec = bounds.precision(case.dtype)
    kwargs = case.kwargs
    options = {key: kwargs[key] for key in OPTION_KEYS if kwargs.get(key) is not None}
    if "weight" in options:
        options["weight"] = np.asarray(options["weight"], np.float64)
    reduction, g = kwargs.get("reduction", "mean"), kwargs.get("grad_output", 1.0)
    if case.function == "softmax_loss":
        S, y = np.asarray(case.args[0], np.float64), np.asarray(case.args[1])
        y = y.astype(np.float64) if y.ndim == 2 else y
        keep = _kept_columns(np.isneginf(S))
        if keep is None:
            return None
        S, y = S[:, keep], _relabel(y, keep, options.get("ignore_index"))
        if "weight" in options:
            options["weight"] = options["weight"][keep]
        loss, _, dS_bound = _scaled_row_bounds(S, y, np.zeros_like(S), prec, reduction, options, g)
        full = np.zeros((S.shape[0], keep.size))
        full[:, keep] = dS_bound
        return {"loss": loss, "dS": full}
    if case.function == "linear_cross_entropy":
        X, W = (np.asarray(a, np.float64) for a in case.args[:2])
        y = np.asarray(case.args[2])
        bias = kwargs.get("bias")
        bias = None if bias is None else np.asarray(bias, np.float64)
        keep = np.ones(W.shape[1], bool) if bias is None else ~np.isneginf(bias)
        Wk, bk = W[:, keep], None if bias is None else bias[keep]
        yk = _relabel(y, keep, options.get("ignore_index"))
        if "weight" in options:
            options["weight"] = options["weight"][keep]
        S = X @ Wk + (0.0 if bk is None else bk)
        loss, dS, dS_bound = _scaled_row_bounds(S, yk, bounds.product_error(prec, X, Wk, bk), prec, reduction,
                                                options, g)  # fmt: skip
        back = bounds.back_products(prec, X, np.zeros_like(X), dS, dS_bound, Wk)
        dW, db = np.zeros(W.shape), np.zeros(W.shape[1])
        dW[:, keep], db[keep] = back["dW"][1], back["db"][1]
        out = {"loss": loss, "dX": back["dA"][1], "dW": dW}
        return out if bias is None else {**out, "db": db}
    return None


def compare_vjp(case: Case, actual: Any, expected: Any, oracle: str, label: str) -> list[Comparison]:
    """``compare_results`` for a VJP case: float32 against autodiff by ``vjp_bounds``, everything else by the table."""
    tol = tolerance(case.dtype, oracle)
    got, want = quantities(case.function, actual), quantities(case.function, expected)
    limits = vjp_bounds(case) if oracle == AUTODIFF and case.dtype == np.float32 else None
    return compare_outputs(got, want, limits, tol, case.dtype, label)


def failures(comparisons: list[Comparison]) -> list[str]:
    return [c.message for c in comparisons if not c.ok]
