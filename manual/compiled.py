"""Compiled variant: the vectorized closed forms in ``jax.numpy`` under ``jax.jit``.

Hand-derived, not autodiff: every gradient here is the formula of
docs/derivation.md written once more, and XLA compiles it. That lets XLA fuse
the passes over memory that NumPy must make one by one (the one-hot ``Y`` of
eq. 6 becomes a comparison inside the output loop and is never stored), so the
closed form can beat ``jax.jit(jax.value_and_grad(...))`` of the same loss.

The ``*_core`` functions take and return device arrays, for benchmarks that
exclude the conversion to NumPy. The public functions compute in the input's
dtype: float64 inputs turn JAX's 64-bit mode on for the call only.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from softmax_grad.contract import (
    TEXTBOOK,
    LossOptions,
    jacobian_entry,
    linear_loss_entry,
    softmax_entry,
    softmax_loss_entry,
    two_layer_loss_entry,
)

__all__ = [
    "linear_loss",
    "row_max_and_sum",
    "softmax",
    "softmax_jacobian",
    "softmax_loss",
    "softmax_loss_core",
    "softmax_loss_options_core",
    "two_layer_loss",
    "two_layer_loss_core",
]


@jax.jit
def softmax_core(S: jax.Array) -> jax.Array:
    """Eqs. (1), (14)."""
    E = jnp.exp(S - jnp.max(S, axis=1, keepdims=True))
    return E / jnp.sum(E, axis=1, keepdims=True)


@jax.jit
def jacobian_core(x: jax.Array) -> jax.Array:
    """Eq. (13): ``diag(p) - p p^T``."""
    p = softmax_core(x[None, :])[0]
    return jnp.diag(p) - jnp.outer(p, p)


def _merge(a: tuple[jax.Array, jax.Array], b: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
    """Merge two partial (max m, sum of exp(s - m)) pairs: rescale both sums to the larger max."""
    (m1, s1), (m2, s2) = a, b
    m = jnp.maximum(m1, m2)
    # An empty part is (-inf, 0); where() keeps its exp(-inf - -inf) = nan out of the sum.
    return m, jnp.where(s1 == 0, 0.0, s1 * jnp.exp(m1 - m)) + jnp.where(s2 == 0, 0.0, s2 * jnp.exp(m2 - m))


def row_max_and_sum(S: jax.Array, one_pass: bool) -> tuple[jax.Array, jax.Array]:
    """``m_i = max_j S_ij`` and ``sum_j exp(S_ij - m_i)`` (eq. 14), as (N, 1) columns.

    Two passes over ``S`` (max, then the sum), or one pass that carries the
    pair and rescales the running sum whenever the max grows ("online
    softmax", Milakov and Gimelshein, 2018). The one pass reads ``S`` once less
    but takes more ``exp`` per entry: it wins where memory is the bottleneck
    (GPUs), the two passes where ``exp`` is (CPUs).
    """
    if not one_pass:
        m = jnp.max(S, axis=1, keepdims=True)
        return m, jnp.sum(jnp.exp(S - m), axis=1, keepdims=True)
    empty = (jnp.array(-jnp.inf, S.dtype), jnp.array(0, S.dtype))
    m, sums = jax.lax.reduce((S, jnp.ones_like(S)), empty, _merge, (1,))  # each entry is the pair (s, 1)
    return m[:, None], sums[:, None]


@functools.partial(jax.jit, static_argnames=("reduction", "stable", "one_pass"))
def softmax_loss_core(
    S: jax.Array, y: jax.Array, reduction: str = "mean", stable: bool = True, one_pass: bool | None = None
) -> tuple[jax.Array, jax.Array]:
    """Loss (eqs. 4, 15) and ``dS = scale (P - Y)`` (eq. 6), ``scale = 1/N`` for ``"mean"``.

    ``one_pass`` picks how the row max and sum are found (see ``row_max_and_sum``);
    by default one pass on accelerators and two on the CPU.
    """
    scale = 1.0 / S.shape[0] if reduction == "mean" else 1.0
    if one_pass is None:
        one_pass = jax.default_backend() != "cpu"
    if stable:
        shift, sums = row_max_and_sum(S, one_pass)
        E = jnp.exp(S - shift)
        # eq. (15); S_y - shift first, exact when S_y is the max (log(sums) + shift would round at |shift|)
        loss = jnp.sum(jnp.log(sums) - (jnp.take_along_axis(S, y[:, None], axis=1) - shift))
    else:
        E = jnp.exp(S)
        sums = jnp.sum(E, axis=1, keepdims=True)
        loss = -jnp.sum(jnp.log(jnp.take_along_axis(E, y[:, None], axis=1) / sums))  # eq. (2) as written
    # XLA on the CPU divides by multiplying with 1/sums and flushes a subnormal 1/sums to 0.
    # With the shift sums >= 1, so that never happens; the literal formula (stable=False)
    # therefore fails a little earlier here than in NumPy: once sums > 4.5e307 (score 708.4).
    P = E / sums
    Y = y[:, None] == jnp.arange(S.shape[1])  # fused into the output loop, never stored
    dS = scale * (P - Y)  # eq. (6)
    return scale * loss, dS


@functools.partial(jax.jit, static_argnames=("reduction", "stable", "ignore_index"))
def softmax_loss_options_core(
    S: jax.Array,
    y: jax.Array,
    weight: jax.Array | None,
    label_smoothing: jax.Array,
    z_loss: jax.Array,
    softcap: jax.Array | None,
    ignore_index: int | None = None,
    reduction: str = "mean",
    stable: bool = True,
) -> tuple[jax.Array, jax.Array]:
    """Loss and dS with the options of eqs. (17)-(24), by row coefficients.

    ``dZ_i = r_i (a_i p_i - q_i) + 2 z u_i lse_i p_i`` (eq. 24); for integer
    labels ``q`` is a comparison and a broadcast inside XLA's output loop.
    """
    N, C = S.shape
    e, z = label_smoothing, z_loss
    w = jnp.ones(C, S.dtype) if weight is None else weight
    Z = S if softcap is None else softcap * jnp.tanh(S / softcap)  # eq. (17)
    shift = jnp.max(Z, axis=1, keepdims=True) if stable else jnp.zeros((N, 1), S.dtype)
    shifted = Z - shift
    if y.ndim == 2:
        kept = jnp.ones(N, S.dtype)
        q = w * ((1 - e) * y + e / C)  # eq. (18), soft targets
        denominator = jnp.asarray(N, S.dtype)
    else:
        kept = jnp.ones(N, S.dtype) if ignore_index is None else (y != ignore_index).astype(S.dtype)
        labels = jnp.where(kept > 0, y, 0)
        Y = labels[:, None] == jnp.arange(C)  # fused, never stored
        q = w * ((1 - e) * Y + e / C)  # eq. (18), integer labels
        denominator = jnp.sum(kept * w[labels])
    if reduction == "mean":
        r = kept / jnp.where(denominator > 0, denominator, 1)  # eq. (20)
        u = kept / jnp.maximum(jnp.sum(kept), 1)  # eq. (21)
    else:
        r = u = kept
    sums = jnp.sum(jnp.exp(shifted), axis=1)
    log_sums = jnp.log(sums)
    lse = shift[:, 0] + log_sums
    a = jnp.sum(q, axis=1)
    row_losses = a * log_sums - jnp.sum(q * shifted, axis=1)  # eq. (19), shifted form
    loss = jnp.sum(r * row_losses) + jnp.where(z > 0, z * jnp.sum(u * lse * lse), 0.0)  # eq. (21); no 0 * inf
    if reduction == "mean":
        loss = jnp.where(denominator > 0, loss, jnp.nan)
    P = jnp.exp(shifted - log_sums[:, None])
    # eq. (24), the two terms apart: folded into one coefficient r a + 2 z u lse, a small z-term
    # would be rounded away where the cross-entropy gradient vanishes
    dZ = r[:, None] * (a[:, None] * P - q) + (2 * z * u * lse)[:, None] * P
    if softcap is not None:
        dZ = dZ * (1 - jnp.square(Z / softcap))  # eq. (17)'s chain factor
    return loss, dZ


def _l2_penalty(reg: jax.Array, *weights: jax.Array) -> jax.Array:
    return 0.5 * reg * sum(jnp.sum(W * W) for W in weights)  # eq. (3)


@functools.partial(jax.jit, static_argnames=("reduction",))
def linear_loss_core(
    W: jax.Array, X: jax.Array, y: jax.Array, reg: jax.Array, reduction: str = "mean"
) -> tuple[jax.Array, jax.Array]:
    """Eq. (12): ``dW = X^T dS + reg W``."""
    data_loss, dS = softmax_loss_core(X @ W, y, reduction)
    return data_loss + _l2_penalty(reg, W), X.T @ dS + reg * W


@jax.jit
def two_layer_loss_core(
    params: dict[str, jax.Array], X: jax.Array, y: jax.Array, reg: jax.Array
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Eqs. (7)-(11), each gradient one line."""
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    Z1 = X @ W1 + b1  # eq. (7)
    H1 = jnp.maximum(Z1, 0)
    data_loss, dS = softmax_loss_core(H1 @ W2 + b2, y)
    ones = jnp.ones(X.shape[0], X.dtype)
    dW2 = H1.T @ dS + reg * W2  # eq. (8)
    db2 = ones @ dS  # eq. (9)
    dZ1 = (dS @ W2.T) * (Z1 > 0)  # eq. (10)
    dW1 = X.T @ dZ1 + reg * W1  # eq. (11)
    db1 = ones @ dZ1  # eq. (11)
    return data_loss + _l2_penalty(reg, W1, W2), {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}


def _on_host(dtype: np.dtype, core: Callable[..., Any], *args: Any, **static: Any) -> Any:
    """Run ``core`` in ``dtype`` (64-bit mode on only for float64) and bring the results to NumPy."""
    with jax.enable_x64(dtype == np.float64):
        return jax.tree_util.tree_map(np.asarray, core(*args, **static))


@softmax_entry
def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax, eq. (1), compiled, with the row max subtracted (eq. 14).

    >>> from manual import compiled
    >>> compiled.softmax([[1.0, 2.0, 3.0], [1000.0, 1000.0, 0.0]]).round(4)
    array([[0.09  , 0.2447, 0.6652],
           [0.5   , 0.5   , 0.    ]])
    """
    return _on_host(scores.dtype, softmax_core, scores)


@jacobian_entry
def softmax_jacobian(x: np.ndarray) -> np.ndarray:
    """Jacobian of the softmax of one row, eq. (13): ``J = diag(p) - p p^T``, compiled.

    >>> from manual import compiled
    >>> compiled.softmax_jacobian([0.0, 0.0]).tolist()
    [[0.25, -0.25], [-0.25, 0.25]]
    """
    return _on_host(x.dtype, jacobian_core, x)


@softmax_loss_entry
def softmax_loss(
    scores: np.ndarray,
    y: np.ndarray,
    *,
    reduction: str = "mean",
    options: LossOptions = TEXTBOOK,
    stable: bool = True,
) -> tuple[float, np.ndarray]:
    """Softmax cross-entropy loss and ``dS = (P - Y) / N`` (eqs. 4, 6), compiled by XLA.

    ``reduction="sum"`` drops the ``1/N``; ``stable=False`` is the post's literal
    formula, which breaks down past a score of about 708.4 in float64 (87.3 in
    float32): XLA flushes the then subnormal ``1/sum`` to zero. With options
    (weights, ignore_index, smoothing, soft targets, z-loss, soft-capping),
    eqs. (17)-(24).

    >>> from manual import compiled
    >>> loss, dS = compiled.softmax_loss([[0.0, 0.0], [0.0, 0.0]], [0, 1])
    >>> round(loss, 6), dS.tolist()
    (0.693147, [[-0.25, 0.25], [0.25, -0.25]])
    """
    if options.plain and y.ndim == 1:
        return _on_host(scores.dtype, softmax_loss_core, scores, y, reduction=reduction, stable=stable)
    dtype = scores.dtype
    return _on_host(
        dtype,
        softmax_loss_options_core,
        scores,
        y,
        options.weight,
        np.asarray(options.label_smoothing, dtype),
        np.asarray(options.z_loss, dtype),
        None if options.softcap is None else np.asarray(options.softcap, dtype),
        ignore_index=options.ignore_index,
        reduction=reduction,
        stable=stable,
    )


@linear_loss_entry
def linear_loss(
    W: np.ndarray, X: np.ndarray, y: np.ndarray, *, reg: float = 0.0, reduction: str = "mean"
) -> tuple[float, np.ndarray]:
    """Linear softmax classifier: loss and ``dW = X^T dS + reg W`` (eqs. 3, 12), compiled.

    >>> import numpy as np
    >>> from manual import compiled
    >>> loss, dW = compiled.linear_loss(np.zeros((2, 2)), [[1.0, 2.0]], [1])
    >>> round(loss, 6), dW.tolist()
    (0.693147, [[0.5, -0.5], [1.0, -1.0]])
    """
    return _on_host(W.dtype, linear_loss_core, W, X, y, reg, reduction=reduction)


@two_layer_loss_entry
def two_layer_loss(
    params: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray, *, reg: float = 0.0
) -> tuple[float, dict[str, np.ndarray]]:
    """Two-layer ReLU net: loss and every gradient (eqs. 7-11), compiled.

    ``db2 = 1^T dS`` and ``db1 = 1^T dZ1``: the bias is broadcast to all N rows,
    so its gradient sums over them (see ``manual.vectorized.two_layer_loss``).

    >>> import numpy as np
    >>> from manual import compiled
    >>> params = {"W1": np.eye(2), "b1": np.zeros(2), "W2": np.eye(2), "b2": np.zeros(2)}
    >>> loss, grads = compiled.two_layer_loss(params, [[1.0, -1.0]], [0], reg=0.1)
    >>> round(loss, 6), grads["b2"].round(6).tolist()
    (0.513262, [-0.268941, 0.268941])
    """
    return _on_host(X.dtype, two_layer_loss_core, params, X, y, reg)
