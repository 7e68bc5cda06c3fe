"""The losses as pure ``jax.numpy`` functions: what the autodiff oracle differentiates.

Written from the definitions (eqs. 1-4, 7, 12, 17-21, 25, 55-56), never from the
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
    denominator gives NaN; "none" returns the (N,) row losses of eq. (55),
    an ignored row's 0 included); eq. (21) adds ``z * lse_i^2`` per kept row.
    The label's term ``-log p_iy`` is written so that its autodiff is eq. (30)
    (see ``_label_nll``).

    A score of ``-inf`` is a masked class (eq. 56): ``p = 0`` there, and its
    loss terms are written with ``jnp.where`` so that neither the value nor
    its derivative meets ``0 * -inf`` (a NaN in a branch ``where`` does not
    take still poisons the gradient, so the unsafe value never reaches a
    product). The caller keeps targets off masked classes (the contract does).

    >>> import jax.numpy as jnp
    >>> S = jnp.array([[0.0, 0.0, -jnp.inf], [1.0, 1.0, 1.0]]); y = jnp.array([0, 2])
    >>> [round(float(loss), 4) for loss in softmax_loss_value(S, y, "none")]
    [0.6931, 1.0986]
    """
    N, C = S.shape
    masked = S == -jnp.inf
    Z = _softcapped(S, masked, softcap)  # eq. (17), keeping -inf
    log_p = jnp.where(masked, 0.0, jax.nn.log_softmax(Z, axis=1))  # log p_ij; 0 stands in at masked entries
    w = jnp.ones(C, S.dtype) if weight is None else weight
    e = label_smoothing
    smooth = -jnp.sum(w * log_p, axis=1)  # sum_j w_j (-log p_ij) over the classes that exist
    if y.ndim == 2:  # soft targets, eq. (18): w_j ((1 - e) t_ij + e / C)
        kept = jnp.ones(N, bool)
        row_losses = -(1 - e) * jnp.sum(w * y * log_p, axis=1) + (e / C) * smooth
        denominator = jnp.asarray(N, S.dtype)
    else:
        kept = jnp.ones(N, bool) if ignore_index is None else y != ignore_index
        # an ignored row's label stands in as its top class: one that exists, whose -log p is finite
        labels = jnp.where(kept, y, jnp.argmax(Z, axis=1))
        w_y = jnp.where(kept, w[labels], 0.0)
        nll = _label_nll(Z, labels)
        row_losses = (1 - e) * w_y * nll + (e / C) * smooth  # eqs. (18)-(19)
        denominator = jnp.sum(w_y)
    lse = jax.nn.logsumexp(Z, axis=1)
    # eq. (21); where() keeps 0 * lse^2 from turning into 0 * inf = NaN when the logits are near float's top
    penalties = jnp.where(kept & (z_loss > 0), z_loss * lse**2, 0.0)
    cross_entropies = jnp.where(kept, row_losses, 0.0)
    if reduction == "none":  # eq. (55): torch's per-row losses, nothing divided
        return cross_entropies + penalties
    cross_entropy, penalty = jnp.sum(cross_entropies), jnp.sum(penalties)
    if reduction == "mean":
        defined = denominator > 0
        cross_entropy = jnp.where(defined, cross_entropy / jnp.where(defined, denominator, 1), jnp.nan)
        penalty = penalty / jnp.maximum(jnp.sum(kept), 1)
    return cross_entropy + penalty


def _softcapped(S: jax.Array, masked: jax.Array, softcap: Any) -> jax.Array:
    """Eq. (17), ``c tanh(S / c)``, with a masked ``-inf`` kept at ``-inf`` (eq. 56), not sent to ``-c``.

    ``tanh`` is taken of 0 at masked entries (the double ``where``): its derivative there is then 1, not the
    ``1 - tanh^2`` of an infinite argument, and nothing infinite enters a product.
    """
    if softcap is None:
        return S
    safe = jnp.where(masked, 0.0, S)
    return jnp.where(masked, -jnp.inf, softcap * jnp.tanh(safe / softcap))


def _label_nll(Z: jax.Array, labels: jax.Array) -> jax.Array:
    """``-log p_iy`` as ``softplus(t_i)``, ``t_i = log sum_{j != y_i} e^{Z_ij} - Z_iy`` (derivation, eq. 30).

    The same number as ``-log_softmax(Z)[i, y_i]``, but its derivative is formed
    without cancellation: in ``Z_iy`` it is ``-sigmoid(t_i) = -(sum_{j != y} e^{Z_ij}) / sum_j e^{Z_ij}``,
    where the log-softmax form gives ``p_iy - 1``, which rounds to 0 once the
    label leads by about 37; in ``Z_ij`` (``j != y_i``) it is ``sigmoid(t_i)`` times
    the softmax over the other classes, ``p_ij``. JAX differentiates it as written:
    no custom derivative. With one class there is no other class: ``-log 1 = 0``;
    nor is there when every other class is masked (eq. 56): ``t_i = -inf``, and
    the log-sum-exp of no term is never formed (its derivative would be 0/0).
    """
    N, C = Z.shape
    if C == 1:
        return jnp.zeros(N, Z.dtype)
    # Both terms of t_i relative to the row max, as jax.nn.log_softmax does (eq. 14): t_i is the difference of
    # two numbers as large as the logits otherwise, and at 1.7e308 it would round to 0.
    shifted = Z - jax.lax.stop_gradient(Z.max(axis=1, keepdims=True))
    is_other = (jnp.arange(C) != labels[:, None]) & (Z > -jnp.inf)
    has_others = is_other.any(axis=1)
    others = jnp.where(is_other, shifted, -jnp.inf)
    safe_others = jnp.where(has_others[:, None], others, 0.0)  # a row with no other class: a finite stand-in
    log_others = jax.nn.logsumexp(safe_others, axis=1)  # log sum_{j != y_i} e^{Z_ij - m_i}
    shifted_y = jnp.take_along_axis(shifted, labels[:, None], axis=1)[:, 0]
    t = jnp.where(has_others, log_others - shifted_y, 0.0)
    return jnp.where(has_others, jax.nn.softplus(t), 0.0)  # log(1 + e^{t_i}) = -log p_iy


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
