"""The losses as pure ``jax.numpy`` functions: what the autodiff oracle differentiates.

Written from the definitions (eqs. 1-4, 7, 12, 17-21, 25), never from the
hand-derived gradients, and never importing ``manual``. ``jax.nn.log_softmax``
carries the max shift. Plain functions of arrays, so callers may ``jax.jit`` or
``jax.value_and_grad`` them (the benchmarks and the checker do both).

The loss options are keyword arguments with ``torch.nn.functional.cross_entropy``'s
conventions (README, "Loss options"); with their defaults each function is
the textbook loss of eq. (4).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def softmax_loss_value(
    S: jax.Array,
    y: jax.Array,
    reduction: str = "mean",
    weight: jax.Array | None = None,
    ignore_index: Any = None,
    label_smoothing: Any = 0.0,
    z_loss: Any = 0.0,
    softcap: Any = None,
) -> jax.Array:
    """The cross-entropy of scores ``S`` (N, C) with labels (N,) or soft targets (N, C).

    Eq. (17) caps the logits; eq. (19) is the row loss ``-sum_j q_ij log p_ij``
    with eq. (18)'s weighted, smoothed targets; eq. (20) reduces it ("mean"
    divides by the kept rows' label weights, or by N for soft targets; a zero
    denominator gives NaN); eq. (21) adds ``z * lse_i^2`` over the kept rows.
    The label's term ``-log p_iy`` is written so that its autodiff is eq. (30)
    (see ``_label_nll``).
    """
    N, C = S.shape
    Z = S if softcap is None else softcap * jnp.tanh(S / softcap)  # eq. (17)
    log_p = jax.nn.log_softmax(Z, axis=1)
    w = jnp.ones(C, S.dtype) if weight is None else weight
    e = label_smoothing
    smooth = -jnp.sum(w * log_p, axis=1)  # sum_j w_j (-log p_ij)
    if y.ndim == 2:  # soft targets, eq. (18): w_j ((1 - e) t_ij + e / C)
        kept = jnp.ones(N, S.dtype)
        row_losses = -(1 - e) * jnp.sum(w * y * log_p, axis=1) + (e / C) * smooth
        denominator = jnp.asarray(N, S.dtype)
    else:
        kept = jnp.ones(N, S.dtype) if ignore_index is None else (y != ignore_index).astype(S.dtype)
        labels = jnp.where(kept > 0, y, 0)
        w_y = w[labels]
        nll = _label_nll(Z, labels)
        row_losses = (1 - e) * w_y * nll + (e / C) * smooth  # eqs. (18)-(19)
        denominator = jnp.sum(kept * w_y)
    lse = jax.nn.logsumexp(Z, axis=1)
    cross_entropy = jnp.sum(kept * row_losses)
    # eq. (21); where() keeps 0 * lse^2 from turning into 0 * inf = NaN when the logits are near float's top
    penalty = jnp.where(z_loss > 0, z_loss * jnp.sum(kept * lse**2), 0.0)
    if reduction == "mean":
        defined = denominator > 0
        cross_entropy = jnp.where(defined, cross_entropy / jnp.where(defined, denominator, 1), jnp.nan)
        penalty = penalty / jnp.maximum(jnp.sum(kept), 1)
    return cross_entropy + penalty


def _label_nll(Z: jax.Array, labels: jax.Array) -> jax.Array:
    """``-log p_iy`` as ``softplus(t_i)``, ``t_i = log sum_{j != y_i} e^{Z_ij} - Z_iy`` (derivation, eq. 30).

    The same number as ``-log_softmax(Z)[i, y_i]``, but its derivative is formed
    without cancellation: in ``Z_iy`` it is ``-sigmoid(t_i) = -(sum_{j != y} e^{Z_ij}) / sum_j e^{Z_ij}``,
    where the log-softmax form gives ``p_iy - 1``, which rounds to 0 once the
    label leads by about 37; in ``Z_ij`` (``j != y_i``) it is ``sigmoid(t_i)`` times
    the softmax over the other classes, ``p_ij``. JAX differentiates it as written:
    no custom derivative. With one class there is no other class: ``-log 1 = 0``.
    """
    N, C = Z.shape
    if C == 1:
        return jnp.zeros(N, Z.dtype)
    # Both terms of t_i relative to the row max, as jax.nn.log_softmax does (eq. 14): t_i is the difference of
    # two numbers as large as the logits otherwise, and at 1.7e308 it would round to 0.
    shifted = Z - jax.lax.stop_gradient(Z.max(axis=1, keepdims=True))
    is_label = jnp.arange(C) == labels[:, None]
    log_others = jax.nn.logsumexp(jnp.where(is_label, -jnp.inf, shifted), axis=1)  # log sum_{j != y_i} e^{Z_ij - m_i}
    shifted_y = jnp.take_along_axis(shifted, labels[:, None], axis=1)[:, 0]
    return jax.nn.softplus(log_others - shifted_y)  # log(1 + e^{t_i}) = -log p_iy


def l2_penalty(reg: float, *weights: jax.Array) -> jax.Array:
    """Eq. (3): ``reg * 0.5 * sum of squares`` over every weight matrix."""
    return 0.5 * reg * sum(jnp.sum(W**2) for W in weights)


def linear_loss_value(
    W: jax.Array, X: jax.Array, y: jax.Array, reg: float, reduction: str, **options: Any
) -> jax.Array:
    """Eq. (12) forward: the loss of ``S = X W`` plus the penalty on ``W``."""
    return softmax_loss_value(X @ W, y, reduction, **options) + l2_penalty(reg, W)


def two_layer_loss_value(
    params: dict[str, jax.Array], X: jax.Array, y: jax.Array, reg: float, **options: Any
) -> jax.Array:
    """Eq. (7) forward, then eqs. (3)-(4). ``jax.nn.relu`` has derivative 0 at 0."""
    H1 = jax.nn.relu(X @ params["W1"] + params["b1"])
    S = H1 @ params["W2"] + params["b2"]
    return softmax_loss_value(S, y, "mean", **options) + l2_penalty(reg, params["W1"], params["W2"])


def linear_cross_entropy_value(
    X: jax.Array, W: jax.Array, y: jax.Array, bias: jax.Array | None = None, reduction: str = "mean", **options: Any
) -> jax.Array:
    """Eq. (25) forward, dense: the logits ``X W + 1 b^T`` in full, then the cross-entropy of eqs. (17)-(21)."""
    S = X @ W if bias is None else X @ W + bias
    return softmax_loss_value(S, y, reduction, **options)
