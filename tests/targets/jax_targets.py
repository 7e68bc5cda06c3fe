"""JAX functions for the checker's tests: a custom_vjp, and losses built from jax.numpy."""

from __future__ import annotations

import jax
import jax.numpy as jnp


@jax.custom_vjp
def cross_entropy(scores, y):
    log_p = jax.nn.log_softmax(scores, axis=1)
    return -jnp.take_along_axis(log_p, y[:, None], axis=1).mean()


def _forward(scores, y):
    return cross_entropy(scores, y), (jax.nn.softmax(scores, axis=1), y)


def _backward(saved, grad):
    p, y = saved
    onehot = jax.nn.one_hot(y, p.shape[1], dtype=p.dtype)
    return grad * (p - onehot) / len(y), None


cross_entropy.defvjp(_forward, _backward)


@jax.custom_vjp
def cross_entropy_flipped(scores, y):
    return cross_entropy(scores, y)


def _flipped_backward(saved, grad):
    p, y = saved
    return grad * (jax.nn.one_hot(y, p.shape[1], dtype=p.dtype) - p) / len(y), None  # onehot - p: the sign flipped


cross_entropy_flipped.defvjp(_forward, _flipped_backward)


def in_float32(scores, y):
    """Right, but computes in float32 whatever it is given."""
    return cross_entropy(jnp.asarray(scores, jnp.float32), y)


def two_layer(params, X, y, reg):
    H1 = jax.nn.relu(X @ params["W1"] + params["b1"])
    log_p = jax.nn.log_softmax(H1 @ params["W2"] + params["b2"], axis=1)
    data = -jnp.take_along_axis(log_p, y[:, None], axis=1).mean()
    return data + 0.5 * reg * (jnp.sum(params["W1"] ** 2) + jnp.sum(params["W2"] ** 2))


@jax.custom_vjp
def cross_entropy_sum_forward(scores, y):
    """The plain call returns the mean; the forward rule, which value_and_grad uses, returns the sum."""
    return cross_entropy(scores, y)


def _sum_forward(scores, y):
    loss, saved = _forward(scores, y)
    return loss * len(y), saved  # N times the loss: only the differentiated call sees it


cross_entropy_sum_forward.defvjp(_sum_forward, _backward)
