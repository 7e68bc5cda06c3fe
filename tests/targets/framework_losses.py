"""The frameworks' own losses, written as their users write them: what every dtype's bound must let pass.

PyTorch: ``F.cross_entropy`` (and ``F.linear`` before it), autograd for the
gradients. JAX: ``jax.nn.log_softmax`` and plain ``jax.value_and_grad``, no
``custom_vjp``. Each takes the loss options as keywords, so that
``functools.partial`` fixes them for a check; the penalty is eq. (3)'s
``reg/2 sum W^2`` times ``2 * reg_scale`` (the checker's default ``reg_scale``
0.5 makes it ``reg/2``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import torch
from torch.nn import functional

TORCH_IGNORE = -100


def _torch_ce(S, y, weight=None, ignore_index=None, label_smoothing=0.0, z_loss=0.0, softcap=None):
    masked = torch.isneginf(S)  # a masked class stays -inf under the cap (eq. 56): tanh never sees it
    Z = S if softcap is None else torch.where(masked, S, softcap * torch.tanh(torch.where(masked, 0.0, S) / softcap))
    w = None if weight is None else torch.as_tensor(weight, dtype=S.dtype)
    ignore = TORCH_IGNORE if ignore_index is None else ignore_index
    loss = functional.cross_entropy(Z, y, weight=w, ignore_index=ignore, label_smoothing=label_smoothing)
    if z_loss:
        kept = (y != ignore).to(S.dtype)
        loss = loss + z_loss * torch.sum(kept * torch.logsumexp(Z, dim=1) ** 2) / torch.clamp(kept.sum(), min=1)
    return loss


def torch_scores(scores, y, **options):
    return _torch_ce(scores, y, **options)


def torch_linear(W, X, y, reg, **options):
    return _torch_ce(X @ W, y, **options) + 0.5 * reg * torch.sum(W * W)


def torch_two_layer(params, X, y, reg, **options):
    H1 = torch.relu(X @ params["W1"] + params["b1"])
    S = H1 @ params["W2"] + params["b2"]
    return _torch_ce(S, y, **options) + 0.5 * reg * (torch.sum(params["W1"] ** 2) + torch.sum(params["W2"] ** 2))


def torch_linear_ce(X, W, y, bias, **options):
    return _torch_ce(functional.linear(X, W.T, bias), y, **options)


def _jax_ce(S, y, weight=None, ignore_index=None, label_smoothing=0.0, z_loss=0.0, softcap=None):
    N, C = S.shape
    masked = jnp.isneginf(S)  # a masked class stays -inf under the cap (eq. 56): tanh never sees it
    Z = S if softcap is None else jnp.where(masked, S, softcap * jnp.tanh(jnp.where(masked, 0.0, S) / softcap))
    log_p = jax.nn.log_softmax(Z, axis=1)
    w = jnp.ones(C, S.dtype) if weight is None else jnp.asarray(weight, S.dtype)
    kept = jnp.ones(N, bool) if ignore_index is None else y != ignore_index
    labels = jnp.where(kept, y, 0)
    w_y = jnp.where(kept, w[labels], 0)
    nll = -jnp.take_along_axis(log_p, labels[:, None], axis=1)[:, 0]
    smooth = -jnp.sum(w * log_p, axis=1)
    rows = (1 - label_smoothing) * w_y * nll
    if label_smoothing:  # only then: a masked class makes smooth inf, and 0 * inf is NaN
        rows = rows + label_smoothing / C * jnp.where(kept, smooth, 0)
    denominator = jnp.sum(w_y)  # 0 when every row is ignored: the mean of nothing is NaN, its gradient 0
    loss = jnp.where(denominator > 0, jnp.sum(rows) / jnp.where(denominator > 0, denominator, 1), jnp.nan)
    if z_loss:
        lse = jax.nn.logsumexp(Z, axis=1)
        loss = loss + z_loss * jnp.sum(jnp.where(kept, lse**2, 0)) / jnp.maximum(jnp.sum(kept), 1)
    return loss


def jax_scores(scores, y, **options):
    return _jax_ce(scores, y, **options)


def jax_linear(W, X, y, reg, **options):
    return _jax_ce(X @ W, y, **options) + 0.5 * reg * jnp.sum(W * W)


def jax_two_layer(params, X, y, reg, **options):
    H1 = jax.nn.relu(X @ params["W1"] + params["b1"])
    S = H1 @ params["W2"] + params["b2"]
    return _jax_ce(S, y, **options) + 0.5 * reg * (jnp.sum(params["W1"] ** 2) + jnp.sum(params["W2"] ** 2))


def jax_linear_ce(X, W, y, bias, **options):
    return _jax_ce(X @ W + bias, y, **options)


TARGETS = {
    ("torch", "scores"): torch_scores,
    ("torch", "linear"): torch_linear,
    ("torch", "two_layer"): torch_two_layer,
    ("torch", "linear_ce"): torch_linear_ce,
    ("jax", "scores"): jax_scores,
    ("jax", "linear"): jax_linear,
    ("jax", "two_layer"): jax_two_layer,
    ("jax", "linear_ce"): jax_linear_ce,
}
