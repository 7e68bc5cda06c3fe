"""The losses as pure ``jax.numpy`` functions: what the autodiff oracle differentiates.

Written from the definitions (eqs. 1-4, 7, 12), never from the hand-derived
gradients, and never importing ``manual``. ``jax.nn.log_softmax`` carries the
max shift. Plain functions of arrays, so callers may ``jax.jit`` or
``jax.value_and_grad`` them (the benchmarks do both).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def softmax_loss_value(S: jax.Array, y: jax.Array, reduction: str = "mean") -> jax.Array:
    """Eqs. (2), (4): ``mean_i`` (or ``sum_i``) of ``-log softmax(S)[i, y_i]``."""
    log_p = jax.nn.log_softmax(S, axis=1)
    sample_losses = -jnp.take_along_axis(log_p, y[:, None], axis=1)[:, 0]
    return jnp.mean(sample_losses) if reduction == "mean" else jnp.sum(sample_losses)


def l2_penalty(reg: float, *weights: jax.Array) -> jax.Array:
    """Eq. (3): ``reg * 0.5 * sum of squares`` over every weight matrix."""
    return 0.5 * reg * sum(jnp.sum(W**2) for W in weights)


def linear_loss_value(W: jax.Array, X: jax.Array, y: jax.Array, reg: float, reduction: str) -> jax.Array:
    """Eq. (12) forward: the loss of ``S = X W`` plus the penalty on ``W``."""
    return softmax_loss_value(X @ W, y, reduction) + l2_penalty(reg, W)


def two_layer_loss_value(params: dict[str, jax.Array], X: jax.Array, y: jax.Array, reg: float) -> jax.Array:
    """Eq. (7) forward, then eqs. (3)-(4). ``jax.nn.relu`` has derivative 0 at 0."""
    H1 = jax.nn.relu(X @ params["W1"] + params["b1"])
    S = H1 @ params["W2"] + params["b2"]
    return softmax_loss_value(S, y, "mean") + l2_penalty(reg, params["W1"], params["W2"])
