"""Sharded JAX losses for ``check(..., mesh=...)``: vocabulary-parallel ``jax.shard_map`` bodies (eqs. (45)-(53)).

Each runs under the checker's ``jax.set_mesh``, so ``jax.shard_map`` finds the
("batch", "vocab") mesh without ``mesh=``. ``vocab_parallel`` is right; the
others carry one collective slip each, as users' sharded losses do.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import PartitionSpec as P

SMOOTHING = 0.1  # what the smoothing targets implement (check with label_smoothing=SMOOTHING)


def _loss(X, W, y, bias, *, smoothing=0.0, sum_exp="psum", local_mean=False):
    def local(X, W, y, bias):
        S = X @ W + bias  # this device's rows and classes
        width = S.shape[1]
        classes = width * lax.axis_size("vocab")
        start = lax.axis_index("vocab") * width
        m = lax.pmax(jnp.max(lax.stop_gradient(S), axis=1), "vocab")  # eq. (46); the shift cancels
        reduce = lax.psum if sum_exp == "psum" else lax.pmean
        lse = m + jnp.log(reduce(jnp.sum(jnp.exp(S - m[:, None]), axis=1), "vocab"))
        owned = (y >= start) & (y < start + width)  # eq. (47)'s owner mask
        picked = jnp.take_along_axis(S, jnp.where(owned, y - start, 0)[:, None], axis=1)[:, 0]
        target = lax.psum(jnp.where(owned, picked, 0.0), "vocab")
        smooth = lax.psum(jnp.sum(lse[:, None] - S, axis=1), "vocab")  # eq. (48), over every class
        row = (1 - smoothing) * (lse - target) + smoothing * smooth / (width if local_mean else classes)
        return lax.psum(jnp.sum(row), "batch") / lax.psum(row.shape[0], "batch")

    spec = (P("batch", None), P(None, "vocab"), P("batch"), P("vocab"))
    for name, value, want in zip("XWyb", (X, W, y, bias), spec, strict=True):  # as the checker documents
        if jax.typeof(value).sharding.spec != want:
            raise ValueError(f"{name} arrived as {jax.typeof(value).sharding.spec}, not {want}")
    return jax.shard_map(local, in_specs=spec, out_specs=P())(X, W, y, bias)


def vocab_parallel(X, W, y, bias):
    """Right: every collective of eqs. (46)-(50) in place."""
    return _loss(X, W, y, bias)


def vocab_parallel_smoothed(X, W, y, bias):
    """Right, with label smoothing ``SMOOTHING``."""
    return _loss(X, W, y, bias, smoothing=SMOOTHING)


def local_slice_smoothing(X, W, y, bias):
    """Megatron's slip: the smoothing mean divides by the local slice's class count."""
    return _loss(X, W, y, bias, smoothing=SMOOTHING, local_mean=True)


def pmean_sum_exp(X, W, y, bias):
    """A pmean where eq. (46)'s psum of the exponentials belongs."""
    return _loss(X, W, y, bias, sum_exp="pmean")


def dx_without_all_reduce(X, W, y, bias):
    """Loss and gradients by hand (eqs. (51)-(53)), with dX's psum over "vocab" left out."""

    def local(X, W, y, bias):
        S = X @ W + bias
        width = S.shape[1]
        start = lax.axis_index("vocab") * width
        m = lax.pmax(jnp.max(S, axis=1), "vocab")
        lse = m + jnp.log(lax.psum(jnp.sum(jnp.exp(S - m[:, None]), axis=1), "vocab"))
        owned = (y >= start) & (y < start + width)
        picked = jnp.take_along_axis(S, jnp.where(owned, y - start, 0)[:, None], axis=1)[:, 0]
        rows = lax.psum(S.shape[0], "batch")
        loss = lax.psum(jnp.sum(lse - lax.psum(jnp.where(owned, picked, 0.0), "vocab")), "batch") / rows
        onehot = jnp.where(owned[:, None], jax.nn.one_hot(y - start, width, dtype=S.dtype), 0.0)
        dS = (jnp.exp(S - lse[:, None]) - onehot) / rows  # eq. (51), no communication
        dW, db = lax.psum(X.T @ dS, "batch"), lax.psum(jnp.sum(dS, axis=0), "batch")  # eq. (52)
        dX = dS @ W.T  # eq. (53) without its psum over "vocab"
        return loss, {"X": dX, "W": dW, "b": db}

    spec = (P("batch", None), P(None, "vocab"), P("batch"), P("vocab"))
    out = (P(), {"X": P("batch", None), "W": P(None, "vocab"), "b": P("vocab")})
    return jax.shard_map(local, in_specs=spec, out_specs=out, check_vma=False)(X, W, y, bias)
