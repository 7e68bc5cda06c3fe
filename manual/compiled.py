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

from manual import sharded
from manual._on_device import (
    check_cotangent_layout,
    check_cotangent_on_device,
    check_layout,
    check_on_device,
    cotangent_is_valid,
    is_device_call,
    masks_are_valid,
    values_are_valid,
)
from manual._options import class_chunk_width
from softmax_grad.contract import (
    LOSS_REDUCTIONS,
    TEXTBOOK,
    LossOptions,
    check_chunk_size,
    check_flag,
    check_grad_output,
    check_linear_layout,
    check_options,
    check_reduction,
    jacobian_entry,
    linear_cross_entropy_entry,
    linear_loss_entry,
    softmax_entry,
    softmax_loss_entry,
    two_layer_loss_entry,
)

__all__ = [
    "linear_cross_entropy",
    "linear_cross_entropy_core",
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
    # An empty part (-inf, 0) and a masked class (-inf, 1) (eq. 56) add 0: where() keeps their
    # exp(-inf - -inf) = nan out of the sum when both parts are -inf.
    first = jnp.where(jnp.isneginf(m1), 0.0, s1 * jnp.exp(m1 - m))
    return m, first + jnp.where(jnp.isneginf(m2), 0.0, s2 * jnp.exp(m2 - m))


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


def _log_sums(others: jax.Array, E_y: jax.Array) -> jax.Array:
    """``log(others + E_y)``, as ``log1p(others)`` where the label holds the row max (``E_y = 1``): a loss
    near 0 (``p_y`` near 1) keeps its digits instead of rounding ``1 + others`` first."""
    return jnp.where(E_y == 1, jnp.log1p(others), jnp.log(others + E_y))


def _online_others(S: jax.Array, Y: jax.Array, S_y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One pass (accelerators): the online pair over ``S`` with the label's entry the empty pair ``(-inf, 0)``,
    merged with ``S_y`` at the end: the row max ``m`` and the other classes' ``sum_{j != y} exp(S_ij - m_i)``."""
    empty = (jnp.array(-jnp.inf, S.dtype), jnp.array(0, S.dtype))
    masked = (jnp.where(Y, -jnp.inf, S), jnp.where(Y, 0, 1).astype(S.dtype))
    m_others, s_others = jax.lax.reduce(masked, empty, _merge, (1,))
    m = jnp.maximum(m_others[:, None], S_y)
    return m, jnp.where(s_others == 0, 0, s_others * jnp.exp(m_others - m[:, 0]))[:, None]


def _cotangent(grad_output: jax.Array | None, dtype: Any) -> jax.Array:
    """The loss's cotangent ``g`` of eq. (54) as an array of ``dtype``; None is 1. It is multiplied in always,
    never skipped where it is 1 (a backward that skips it at 1 passes every test that uses 1 and nothing else)."""
    return jnp.ones((), dtype) if grad_output is None else jnp.asarray(grad_output, dtype)


@functools.partial(jax.jit, static_argnames=("reduction", "stable", "one_pass"))
def softmax_loss_core(
    S: jax.Array,
    y: jax.Array,
    reduction: str = "mean",
    stable: bool = True,
    one_pass: bool | None = None,
    grad_output: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Loss (eqs. 4, 15) and ``dS = g scale (P - Y)`` (eqs. 6, 54), ``scale = 1/N`` for ``"mean"``.

    ``reduction="none"`` returns the (N,) row losses (eq. 55) and takes an
    (N,) cotangent ``g`` (``grad_output``; a scalar, default 1, otherwise).
    A score of ``-inf`` is a masked class: ``p = 0`` and its entry of ``dS``
    is 0 (eq. 56).

    The label entry ``p_y - 1`` is eq. (30)'s ``-(sum_{j != y} exp(s_j - m)) / sums``,
    a quotient with no subtraction in it: the ``exp`` pass skips the label
    (its entry is ``exp(-inf) = 0``), so its row sum is the other classes' sum,
    and ``sums`` adds the label's term from the gathered ``S_y``. ``one_pass``
    picks how the row max and sums are found (see ``row_max_and_sum``); by
    default one pass on accelerators and two on the CPU.
    """
    scale = 1.0 / S.shape[0] if reduction == "mean" else 1.0
    g = _cotangent(grad_output, S.dtype)
    if one_pass is None:
        one_pass = jax.default_backend() != "cpu"
    Y = y[:, None] == jnp.arange(S.shape[1])  # fused into the loops that use it, never stored
    S_y = jnp.take_along_axis(S, y[:, None], axis=1)
    if not stable:
        E = jnp.exp(jnp.where(Y, -jnp.inf, S))
        others, E_y = jnp.sum(E, axis=1, keepdims=True), jnp.exp(S_y)
        sums = others + E_y
        row_losses = -jnp.log(E_y / sums)[:, 0]  # eq. (2) as written
    else:
        if one_pass:
            shift, others = _online_others(S, Y, S_y)
            E = jnp.exp(jnp.where(Y, -jnp.inf, S) - shift)
        else:
            shift = jnp.max(S, axis=1, keepdims=True)
            E = jnp.exp(jnp.where(Y, -jnp.inf, S) - shift)
            others = jnp.sum(E, axis=1, keepdims=True)
        E_y = jnp.exp(S_y - shift)
        sums = others + E_y
        # eq. (15); S_y - shift first, exact when S_y is the max (log(sums) + shift would round at |shift|)
        row_losses = (_log_sums(others, E_y) - (S_y - shift))[:, 0]
    # XLA on the CPU divides by multiplying with 1/sums and flushes a subnormal 1/sums to 0.
    # With the shift sums >= 1, so that never happens; the literal formula (stable=False)
    # therefore fails a little earlier here than in NumPy: once sums > 4.5e307 (score 708.4).
    P_minus_Y = jnp.where(Y, -others / sums, E / sums)  # eqs. (6), (30)
    if reduction == "none":
        return row_losses, g[:, None] * P_minus_Y  # eqs. (54), (55)
    return scale * jnp.sum(row_losses), (g * scale) * P_minus_Y  # eq. (54): g scales the gradient only


def _capped(S: jax.Array, softcap: jax.Array | None) -> jax.Array:
    """Eq. (17), ``c tanh(S / c)``, keeping a masked class at ``-inf`` (eq. 56): ``tanh`` would make it ``-c``."""
    return S if softcap is None else jnp.where(jnp.isneginf(S), -jnp.inf, softcap * jnp.tanh(S / softcap))


def _cap_chain(dZ: jax.Array, Z: jax.Array, softcap: jax.Array | None) -> jax.Array:
    """Eq. (17)'s chain factor ``1 - (Z/c)^2``; 0 at a masked class, where the factor is ``-inf`` and dZ is 0."""
    return dZ if softcap is None else jnp.where(jnp.isneginf(Z), 0, dZ * (1 - jnp.square(Z / softcap)))


def _unmasked(A: jax.Array) -> jax.Array:
    """``A`` with its ``-inf`` entries (masked classes, eq. 56) as 0, for a product whose other factor is 0
    there (no target mass, no smoothing on a masked class): 0 * -inf would be NaN."""
    return jnp.where(jnp.isneginf(A), 0, A)


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
    grad_output: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Loss and dS with the options of eqs. (17)-(24), by row coefficients, and the cotangent of eq. (54).

    ``dZ_i = r_i (a_i p_i - q_i) + 2 z u_i lse_i p_i`` (eq. 24), with ``r_i``
    and ``u_i`` times the cotangent ``g_i`` (eq. 54) for the gradient and as
    they are for the loss; "none" gives the (N,) row losses of eq. (55)
    (``r_i = u_i = k_i``). Masked classes (``-inf``) get ``p = 0`` and a zero
    gradient (eq. 56). For integer
    labels ``q`` is a comparison and a broadcast inside XLA's output loop, and
    the label's entry is an (N,) vector apart: ``a p_y - q_y`` is taken as
    ``(1-e) w_y (p_y - 1) + (e/C)(p_y sum_j w_j - w_y)`` with eq. (30)'s
    ``p_y - 1``, so that ``p_y`` near 1 cancels nothing.
    """
    N, C = S.shape
    e, z = label_smoothing, z_loss
    w = jnp.ones(C, S.dtype) if weight is None else weight
    g = _cotangent(grad_output, S.dtype)
    Z = _capped(S, softcap)  # eq. (17)
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
        w_y = w[labels]
        denominator = jnp.sum(kept * w_y)
    if reduction == "mean":
        r = jnp.where(denominator > 0, kept / jnp.where(denominator > 0, denominator, 1), 0)  # eq. (20); 0 if D_n = 0
        u = kept / jnp.maximum(jnp.sum(kept), 1)  # eq. (21)
    else:
        r = u = kept  # "sum", and "none" (eq. 55)
    if y.ndim == 2:
        log_sums = jnp.log(jnp.sum(jnp.exp(shifted), axis=1))
        a = jnp.sum(q, axis=1)
        row_losses = a * log_sums - jnp.sum(q * _unmasked(shifted), axis=1)  # eq. (19), shifted form
    else:  # eq. (30): the exp pass skips the label, whose term is added from the gathered shifted_y
        shifted_y = jnp.take_along_axis(shifted, labels[:, None], axis=1)[:, 0]
        E = jnp.exp(jnp.where(Y, -jnp.inf, shifted))
        others = jnp.sum(E, axis=1)
        sums = others + jnp.exp(shifted_y)
        log_sums = _log_sums(others, jnp.exp(shifted_y))
        w_total = jnp.sum(w)
        a = (1 - e) * w_y + (e / C) * w_total  # eq. (18) summed over j
        row_losses = a * log_sums - ((1 - e) * w_y * shifted_y + (e / C) * (_unmasked(shifted) @ w))  # eq. (19)
        # An ignored row's stand-in label 0 may be a masked class (shifted_y = -inf): its loss is 0, not 0 * inf.
        row_losses = jnp.where(kept > 0, row_losses, 0)
    lse = shift[:, 0] + log_sums
    if reduction == "none":
        loss = r * row_losses + jnp.where(z > 0, z * u * lse * lse, 0.0)  # eq. (55); no 0 * inf
    else:
        loss = jnp.sum(r * row_losses) + jnp.where(z > 0, z * jnp.sum(u * lse * lse), 0.0)  # eq. (21); no 0 * inf
    if reduction == "mean":
        loss = jnp.where(denominator > 0, loss, jnp.nan)
    r, u = r * g, u * g  # eq. (54): the cotangent scales the row factors of the gradient, and nothing else
    z_coef = 2 * z * u * lse  # eq. (24): the z-loss term's coefficient of p_i, added apart so that it keeps its digits
    if y.ndim == 2:
        P = jnp.exp(shifted - log_sums[:, None])
        dZ = r[:, None] * (a[:, None] * P - q) + z_coef[:, None] * P
    else:
        P = E / sums[:, None]  # p_ij for j != y; the label's entry is the (N,) vector below
        p_y = jnp.exp(shifted_y - log_sums)
        label = r * ((1 - e) * w_y * (-others / sums) + (e / C) * (w_total * p_y - w_y)) + z_coef * p_y  # eq. (30)
        others_entries = (r * a)[:, None] * P - (r * (e / C))[:, None] * w + z_coef[:, None] * P  # eq. (24), j != y
        dZ = jnp.where(Y, label[:, None], others_entries)
    return loss, _cap_chain(dZ, Z, softcap)  # eq. (17)'s chain factor


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
def _softmax_loss_on_host(
    scores: np.ndarray,
    y: np.ndarray,
    *,
    reduction: str = "mean",
    options: LossOptions = TEXTBOOK,
    grad_output: float | np.ndarray = 1.0,
    stable: bool = True,
) -> tuple[Any, np.ndarray]:
    """NumPy in, NumPy out: the cores in the scores' dtype (eqs. 4, 6; with options, 17-24; the VJP, 54-56)."""
    dtype = scores.dtype
    g = np.asarray(grad_output, dtype)
    if options.plain and y.ndim == 1:
        return _on_host(dtype, softmax_loss_core, scores, y, reduction=reduction, stable=stable, grad_output=g)
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
        grad_output=g,
    )


def softmax_loss(
    scores: Any,
    y: Any,
    *,
    reduction: str = "mean",
    grad_output: Any = None,
    weight: Any = None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    stable: bool = True,
) -> tuple[Any, Any]:
    """Softmax cross-entropy loss and ``dS = (P - Y) / N`` (eqs. 4, 6), compiled by XLA; NumPy or device arrays.

    The label entry is eq. (30), free of cancellation. ``reduction="sum"``
    drops the ``1/N``; ``reduction="none"`` returns the (N,) row losses
    (eq. 55). ``dS`` is the VJP at ``grad_output`` (eq. 54): a scalar
    (default 1) for "mean" and "sum", an (N,) array (default ones) for
    "none", which scales each row's gradient and not the loss. A score of
    ``-inf`` is a masked class: probability 0, gradient 0 (eq. 56).
    ``stable=False`` is the post's literal formula, which
    breaks down past a score of about 708.4 in float64 (87.3 in float32): XLA
    flushes the then subnormal ``1/sum`` to zero. With options (weights,
    ignore_index, smoothing, soft targets, z-loss, soft-capping), eqs. (17)-(24).

    NumPy in, NumPy out (a Python float loss, or an (N,) array for "none"). If
    ``scores``, ``y``, ``weight`` or ``grad_output`` is a ``jax.Array``,
    everything stays on the device and the results are ``jax.Array``, the
    loss 0-d (or (N,)): the value checks run inside the compiled
    program, beside the loss, and only their verdict (one boolean) comes to
    the host, where a bad input raises the contract's error (``manual._on_device``).
    The call therefore waits for its result.
    Scores split over a mesh by rows, classes or both are computed where they
    lie, with the collectives of eqs. (46)-(51); ``dS`` comes back sharded
    like the scores (and "none"'s row losses like ``y``).

    >>> from manual import compiled
    >>> loss, dS = compiled.softmax_loss([[0.0, 0.0], [0.0, 0.0]], [0, 1])
    >>> round(loss, 6), dS.tolist()
    (0.693147, [[-0.25, 0.25], [0.25, -0.25]])
    >>> import jax, jax.numpy as jnp
    >>> loss, dS = compiled.softmax_loss(jnp.zeros((2, 2)), jnp.array([0, 1]))
    >>> isinstance(dS, jax.Array), loss.shape, round(float(loss), 6)
    (True, (), 0.693147)
    >>> S = [[0.0, 0.0, -np.inf], [0.0, 0.0, 0.0]]  # class 2 masked in row 0
    >>> losses, dS = compiled.softmax_loss(S, [0, 2], reduction="none", grad_output=[2, 3])
    >>> losses.round(6).tolist(), dS.round(12).tolist()
    ([0.693147, 1.098612], [[-1.0, 1.0, 0.0], [1.0, 1.0, -2.0]])
    """
    options = {"ignore_index": ignore_index, "label_smoothing": label_smoothing, "z_loss": z_loss, "softcap": softcap}
    if not is_device_call(scores, y, weight, grad_output):
        return _softmax_loss_on_host(
            scores, y, reduction=reduction, grad_output=grad_output, stable=stable, weight=weight, **options
        )
    return _softmax_loss_on_device(scores, y, reduction, stable, weight=weight, grad_output=grad_output, **options)


def _dtype(a: Any) -> np.dtype:
    """The dtype of an array argument, read from its metadata (a device array is not copied to the host)."""
    return np.dtype(a.dtype) if hasattr(a, "dtype") else np.asarray(a).dtype


def _device_weight_share(weight: jax.Array, normalise: bool, dtype: Any) -> tuple[jax.Array, jax.Array]:
    """The class weights in ``dtype`` and whether they are valid, read in the weight's own dtype.

    For a mean (``normalise``) they are first scaled by a power of 2 so that the
    largest lies in [0.5, 1), as ``LossOptions.astype`` does on the host: eq. (20)'s
    mean does not change, and a tiny uniform weight no longer rounds to 0.
    """
    valid = jnp.all(jnp.isfinite(weight)) & jnp.all(weight >= 0)
    top = jnp.max(weight)
    if normalise:  # a power-of-2 scale: exact
        weight = jnp.where(valid & (top > 0), jnp.ldexp(weight, -jnp.frexp(top)[1]), weight)
    return weight.astype(dtype), valid


def _class_weight_on_device(weight: jax.Array | None, normalise: bool, dtype: np.dtype) -> tuple[Any, Any]:
    """The class weights cast to ``dtype`` (scaled for a mean, ``_device_weight_share``) and a device flag."""
    if weight is None:
        return None, True
    wide = weight.dtype.itemsize == 8  # a float64 weight is read in 64-bit mode, not truncated on the way in
    with jax.enable_x64(wide or dtype == np.float64):
        source = weight if jnp.issubdtype(weight.dtype, jnp.floating) else weight.astype(np.float64)
        return _device_weight_share(source, normalise, np.dtype(dtype))


def _cotangent_on_device(grad_output: Any, reduction: str, n: int, dtype: np.dtype) -> tuple[jax.Array, Any]:
    """``grad_output`` for a device call: the cotangent in ``dtype`` (eq. 54) and the ``jax.Array`` it came from.

    A host value (None, a number, a NumPy array) is checked by the contract's
    ``check_grad_output`` and moved over; a ``jax.Array`` is checked from its
    metadata here and for finiteness inside the compiled program
    (``cotangent_is_valid``); the second result is then the original array,
    for ``check_cotangent_on_device`` to name a bad entry, else None.
    """
    if not isinstance(grad_output, jax.Array):
        with jax.enable_x64(dtype == np.float64):
            return jnp.asarray(check_grad_output(grad_output, reduction, n, dtype), dtype), None
    check_cotangent_layout(grad_output, reduction, n)
    with jax.enable_x64(dtype == np.float64 or grad_output.dtype.itemsize == 8):  # a float64 g is cast, not truncated
        cast = grad_output.astype(dtype)
    return cast, grad_output


@functools.partial(jax.jit, static_argnames=("ignore_index", "reduction", "stable", "plain"))
def _softmax_loss_checked(
    S: jax.Array,
    y: jax.Array,
    weight: jax.Array | None,
    weight_valid: Any,
    scalars: tuple[jax.Array, jax.Array, jax.Array | None],
    grad_output: jax.Array,
    ignore_index: int | None,
    reduction: str,
    stable: bool,
    plain: bool,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Loss, dS and the inputs' verdict in one compiled program: the checks share the loss's passes over ``S``."""
    if plain:
        loss, dS = softmax_loss_core(S, y, reduction=reduction, stable=stable, grad_output=grad_output)
    else:
        loss, dS = softmax_loss_options_core(
            S, y, weight, *scalars, ignore_index=ignore_index, reduction=reduction, stable=stable,
            grad_output=grad_output,
        )  # fmt: skip
    valid = values_are_valid((S,), y, None, ignore_index, S.shape[1], masked=(True,)) & weight_valid
    valid &= masks_are_valid(S, y, ignore_index, scalars[0]) & cotangent_is_valid(grad_output)
    return loss, dS, valid


def _softmax_loss_on_device(
    scores: Any, y: Any, reduction: str, stable: bool, *, weight: Any, grad_output: Any, **options: Any
) -> tuple[jax.Array, jax.Array]:
    """``softmax_loss`` for device arrays: shapes checked from metadata, values checked inside the compiled call."""
    dtype = np.dtype(np.float32 if _dtype(scores) == np.float32 else np.float64)
    with jax.enable_x64(dtype == np.float64):  # NumPy arguments beside device ones are moved in the right width
        S, y = (a if isinstance(a, jax.Array) else jnp.asarray(a) for a in (scores, y))
    if weight is not None and not isinstance(weight, jax.Array):
        with jax.enable_x64(_dtype(weight).itemsize == 8):
            weight = jnp.asarray(weight)
    if S.ndim != 2:
        raise ValueError(f"scores must be 2-D with shape (N, C), got {S.ndim}-D array of shape {S.shape}")
    if 0 in S.shape:
        raise ValueError(f"scores must not be empty: {'NC'[S.shape.index(0)]} = 0 in shape {S.shape}")
    N, C = S.shape
    expected = (N, C) if jnp.issubdtype(y.dtype, jnp.floating) else (N,)
    if y.shape != expected:
        raise ValueError(f"y has shape {y.shape}, expected {expected} from the scores' shape {S.shape}")
    reduction, stable = check_reduction(reduction, LOSS_REDUCTIONS), check_flag(stable, "stable")
    checked = check_options(C, **options)
    if y.ndim == 2 and checked.ignore_index is not None:
        raise ValueError(f"ignore_index={checked.ignore_index} applies to integer labels only; y holds soft targets")
    check_layout({"scores": S}, y, weight, C)
    g, g_given = _cotangent_on_device(grad_output, reduction, N, dtype)
    check = functools.partial(_check_scores, ignore_index=checked.ignore_index, C=C,
                              label_smoothing=checked.label_smoothing)  # fmt: skip
    if sharded.spans_devices(S, y, weight, g_given):  # on a device mesh: eqs. (45)-(51), manual/sharded.py
        return sharded.softmax_loss(
            S, y, weight, checked, dtype, reduction=reduction, stable=stable, check=check, grad_output=(g, g_given)
        )
    normalise = reduction == "mean" and y.ndim == 1
    cast_weight, weight_valid = _class_weight_on_device(weight, normalise, dtype)
    with jax.enable_x64(dtype == np.float64):
        loss, dS, valid = _softmax_loss_checked(
            S.astype(dtype),
            y.astype(dtype) if y.ndim == 2 else y,
            cast_weight,
            weight_valid,
            _scalar_options(checked, dtype),
            g,
            ignore_index=checked.ignore_index,
            reduction=reduction,
            stable=stable,
            plain=checked.plain and weight is None and y.ndim == 1,
        )
    if not valid:  # the one value that comes to the host; the exact search runs only for bad input
        check(S, y, weight, grad_output=(g, g_given))
        raise ValueError("the inputs hold a value the contract refuses")  # not reached: the search names it
    return loss, dS


def _check_scores(
    S: jax.Array,
    y: jax.Array,
    weight: jax.Array | None,
    *,
    ignore_index: int | None,
    C: int,
    label_smoothing: float,
    grad_output: tuple[jax.Array, Any],
) -> None:
    """The contract's checks, in its order, for device scores (``-inf`` a masked class), targets and cotangent."""
    check_on_device({"scores": S}, y, weight, ignore_index, C, masked="scores", label_smoothing=label_smoothing)
    cast, given = grad_output
    if given is not None:
        check_cotangent_on_device(given, cast)


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


# ----------------------------------------------------------- linear cross-entropy, classes chunked
def _row_factors(
    y: jax.Array, w: jax.Array, e: jax.Array, V: int, ignore_index: int | None, reduction: str, dtype: Any
) -> tuple[jax.Array, ...]:
    """Eqs. (18), (20), (21) per row, from the labels alone: labels, ``w_y``, ``a``, ``r``, ``u``, ``D_n > 0``.

    ``D_n`` and ``K`` are sums over the whole batch, so every chunk (and, with
    the batch sharded, every device) uses the global ``r_i`` and ``u_i``.
    """
    kept = jnp.ones(y.shape[0], dtype) if ignore_index is None else (y != ignore_index).astype(dtype)
    labels = jnp.where(kept > 0, y, 0)
    w_y = w[labels]
    a = (1 - e) * w_y + (e / V) * jnp.sum(w)  # eq. (18)
    denominator = jnp.sum(kept * w_y)  # eq. (20)
    defined = denominator > 0
    if reduction == "sum":
        return labels, w_y, a, kept, kept, defined
    r = jnp.where(defined, kept / jnp.where(defined, denominator, 1), 0)  # eq. (20); 0 when D_n = 0
    return labels, w_y, a, r, kept / jnp.maximum(jnp.sum(kept), 1), defined  # eq. (21)


def _chunk_logits(X: jax.Array, W: jax.Array, bias: jax.Array | None, k0: Any, width: int) -> jax.Array:
    """``S^(k) = X W^(k) + 1 b^(k)T`` (eq. 27) for the ``width`` classes from ``k0`` (traced or static)."""
    S = X @ jax.lax.dynamic_slice_in_dim(W, k0, width, axis=1)
    return S if bias is None else S + jax.lax.dynamic_slice_in_dim(bias, k0, width)


def _lse_update(
    carry: tuple[jax.Array, jax.Array, jax.Array], Z: jax.Array, Y: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Eq. (26) with the label apart (eq. 30): fold one chunk of logits into the running max ``m`` and sum ``s``
    of the other classes, and into ``z_y``, the label's logit (``Y`` marks its column if it is in this chunk)."""
    m, s, z_y = carry
    others = jnp.where(Y, -jnp.inf, Z)
    m_new = jnp.maximum(m, jnp.max(others, axis=1))
    # A row with no other class yet (its label alone in the first chunk) keeps m = -inf: shift by 0 there.
    shift = jnp.where(jnp.isfinite(m_new), m_new, 0)
    s = s * jnp.exp(m - shift) + jnp.sum(jnp.exp(others - shift[:, None]), axis=1)
    return m_new, s, z_y + jnp.sum(jnp.where(Y, Z, 0), axis=1)


def _chunk_gradient(
    S: jax.Array, k0: Any, lse: jax.Array, label_entry: jax.Array, z_coef: jax.Array, rows: tuple[jax.Array, ...],
    w_k: jax.Array, w_total: jax.Array, e: Any, V: int, softcap: jax.Array | None,
) -> tuple[jax.Array, jax.Array]:  # fmt: skip
    """Chunk ``k``'s ``dS^(k)`` by eq. (24) with the final ``lse``, and its share of the row losses (eq. 19).

    ``a p - q`` is taken as ``(1-e) w_y (p - e_y) + (e/V)(p sum_j w_j - w)``, the
    label's ``p_y - 1`` being ``label_entry`` (eq. 30), computed once per row.
    """
    labels, w_y, _, r, _, _ = rows
    Z = _capped(S, softcap)
    log_p = Z - lse[:, None]  # -log p_ij = lse_i - Z_ij >= 0: the loss subtracts nothing large; -inf where masked
    Y = labels[:, None] == k0 + jnp.arange(S.shape[1])  # the label's column, if in this chunk; never stored
    row_loss = -(1 - e) * w_y * jnp.sum(jnp.where(Y, log_p, 0), axis=1) - (e / V) * (_unmasked(log_p) @ w_k)  # (19)
    P = jnp.exp(log_p)
    P_minus_Y = jnp.where(Y, label_entry[:, None], P)  # eq. (30)
    dZ = (r * (1 - e) * w_y)[:, None] * P_minus_Y + (r * (e / V))[:, None] * (w_total * P - w_k)  # eq. (24)
    dZ = dZ + z_coef[:, None] * P  # the z-loss term added apart, so that it keeps its digits
    return _cap_chain(dZ, Z, softcap), row_loss  # eq. (17)'s chain factor, 1 - tanh^2


@functools.partial(jax.jit, static_argnames=("ignore_index", "reduction", "chunk_size"))
def linear_cross_entropy_core(
    X: jax.Array,
    W: jax.Array,
    y: jax.Array,
    bias: jax.Array | None,
    weight: jax.Array | None,
    label_smoothing: jax.Array,
    z_loss: jax.Array,
    softcap: jax.Array | None,
    ignore_index: int | None = None,
    reduction: str = "mean",
    chunk_size: int | None = None,
    grad_output: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Loss, ``dX``, ``dW``, ``db`` of eqs. (25)-(27): two ``fori_loop`` passes over class chunks.

    The gradients are the VJP at ``grad_output`` (eq. 54: ``r_i``, ``u_i``
    times ``g_i``), the loss the (N,) row losses for "none" (eq. 55); a
    ``bias`` of ``-inf`` masks its class (eq. 56).

    Pass 1 carries ``(m, s)`` through eq. (26); pass 2 recomputes each chunk,
    adds ``dS^(k) W^(k)T`` into ``dX`` and writes ``X^T dS^(k)``, ``1^T dS^(k)``
    into their columns of ``dW``, ``db`` (``dynamic_update_slice``, in place).
    Classes left over when ``chunk_size`` does not divide V form one narrower
    chunk outside the loops. One chunk as wide as V is the dense form (25).
    """
    N, V = X.shape[0], W.shape[1]
    dtype = X.dtype
    width = class_chunk_width(N, V, chunk_size)
    e, z = label_smoothing, z_loss
    w = jnp.ones(V, dtype) if weight is None else weight
    ones = jnp.ones(N, dtype)
    if width == V:  # the dense computation (25): three products, no recomputation
        S = X @ W if bias is None else X @ W + bias
        loss, dS = softmax_loss_options_core(
            S, y, weight, e, z, softcap, ignore_index, reduction, grad_output=grad_output
        )
        return loss, dS @ W.T, X.T @ dS, ones @ dS
    g = _cotangent(grad_output, dtype)
    rows = _row_factors(y, w, e, V, ignore_index, "sum" if reduction == "none" else reduction, dtype)
    r, u = rows[3], rows[4]  # the loss's row factors (eqs. 20, 21); the gradient's are times g (eq. 54)
    gradient_rows = (*rows[:3], r * g, u * g, rows[5])
    full, tail = divmod(V, width)
    tail_start = full * width

    labels = rows[0]

    def lse_step(k0: Any, size: int, carry: tuple[jax.Array, ...]) -> tuple[jax.Array, ...]:
        Y = labels[:, None] == k0 + jnp.arange(size)  # the label's column, if in this chunk; never stored
        return _lse_update(carry, _capped(_chunk_logits(X, W, bias, k0, size), softcap), Y)

    # Carries start from full_like(X, ...), so that inside shard_map they vary over the batch axis as X does.
    start = (jax.lax.full_like(X, -jnp.inf, shape=(N,)), jax.lax.full_like(X, 0, shape=(N,)))
    carry = jax.lax.fori_loop(0, full, lambda k, c: lse_step(k * width, width, c), (*start, start[1]))
    if tail:
        carry = lse_step(tail_start, tail, carry)
    m_others, s_others, z_y = carry
    m = jnp.maximum(m_others, z_y)
    others = jnp.where(s_others == 0, 0, s_others * jnp.exp(m_others - m))  # no 0 * exp(nan) when V = 1
    sums = others + jnp.exp(z_y - m)
    lse = m + _log_sums(others, jnp.exp(z_y - m))
    label_entry = -others / sums  # eq. (30): p_y - 1 with nothing cancelled
    z_coef = 2 * z * gradient_rows[4] * lse  # eq. (24): the z-loss term's coefficient of p_i
    w_total = jnp.sum(w)

    def spend(k0: Any, size: int, carry: tuple[jax.Array, ...]) -> tuple[jax.Array, ...]:
        dX, dW, db, row_loss = carry
        w_k = jax.lax.dynamic_slice_in_dim(w, k0, size)
        S = _chunk_logits(X, W, bias, k0, size)
        dS, chunk_loss = _chunk_gradient(S, k0, lse, label_entry, z_coef, gradient_rows, w_k, w_total, e, V, softcap)
        dX = dX + dS @ jax.lax.dynamic_slice_in_dim(W, k0, size, axis=1).T  # eq. (27): a sum over chunks
        dW = jax.lax.dynamic_update_slice_in_dim(dW, X.T @ dS, k0, axis=1)  # eq. (27): written once
        db = jax.lax.dynamic_update_slice_in_dim(db, ones @ dS, k0, axis=0)  # eq. (27): 1^T dS^(k)
        return dX, dW, db, row_loss + chunk_loss

    start = tuple(jax.lax.full_like(X, 0, shape=shape) for shape in (X.shape, W.shape, (V,), (N,)))
    carry = jax.lax.fori_loop(0, full, lambda k, c: spend(k * width, width, c), start)
    if tail:
        carry = spend(tail_start, tail, carry)
    dX, dW, db, row_loss = carry
    # An ignored row's stand-in label 0 may be a masked class (its log p = -inf): its loss is 0, not 0 * inf.
    row_loss = jnp.where(rows[4] > 0, row_loss, 0)
    if reduction == "none":  # eq. (55): r = u = k
        return r * row_loss + jnp.where(z > 0, z * u * lse * lse, 0.0), dX, dW, db
    loss = jnp.sum(r * row_loss) + jnp.where(z > 0, z * jnp.sum(u * lse * lse), 0.0)  # eqs. (20), (21)
    if reduction == "mean":
        loss = jnp.where(rows[5], loss, jnp.nan)  # eq. (20): a mean over no weight is NaN
    return loss, dX, dW, db


def _scalar_options(options: LossOptions, dtype: Any) -> tuple[Any, Any, Any]:
    smoothing, z = np.asarray(options.label_smoothing, dtype), np.asarray(options.z_loss, dtype)
    return smoothing, z, None if options.softcap is None else np.asarray(options.softcap, dtype)


def _check_linear_layout_on_device(
    X: jax.Array, W: jax.Array, y: jax.Array, bias: jax.Array | None, weight: jax.Array | None
) -> int:
    """Shapes, dimensions and dtypes of device arrays, read from their metadata; returns V."""
    N, _, V = check_linear_layout(X.shape, W.shape, None if bias is None else bias.shape)
    if not jnp.issubdtype(y.dtype, jnp.integer):
        raise TypeError(f"y must hold integer class labels (N,), got dtype {y.dtype} and shape {y.shape}")
    if y.shape != (N,):
        raise ValueError(f"y has shape {y.shape}, expected (N,) = ({N},) from X")
    check_layout({"X": X, "W": W, "bias": bias}, y, weight, V)
    return V


def _check_on_device(
    X: jax.Array,
    W: jax.Array,
    y: jax.Array,
    bias: jax.Array | None,
    weight: jax.Array | None,
    ignore: int | None,
    *,
    label_smoothing: float,
    grad_output: tuple[jax.Array, Any],
) -> None:
    """The contract's checks for device arrays, in its order (``manual._on_device``): before the sharded loss,
    or after the one-device loss's verdict came out False.

    Finiteness (``-inf`` in ``bias`` a masked class), label range, weight
    signs, the masks against the labels and the cotangent are reduced on
    device to a few indices, the only numbers that cross to the host.
    """
    V = _check_linear_layout_on_device(X, W, y, bias, weight)
    check_on_device(
        {"X": X, "W": W, "bias": bias}, y, weight, ignore, V, masked="bias", label_smoothing=label_smoothing
    )
    cast, given = grad_output
    if given is not None:
        check_cotangent_on_device(given, cast)


@linear_cross_entropy_entry
def _linear_cross_entropy_on_host(
    X: np.ndarray,
    W: np.ndarray,
    y: np.ndarray,
    *,
    bias: np.ndarray | None = None,
    reduction: str = "mean",
    options: LossOptions = TEXTBOOK,
    grad_output: float | np.ndarray = 1.0,
    chunk_size: int | None = None,
) -> tuple[Any, dict[str, Any]]:
    """NumPy in, NumPy out: ``linear_cross_entropy_core`` in the inputs' dtype (eqs. 25-27; the VJP, 54-56)."""
    loss, dX, dW, db = _on_host(
        X.dtype,
        linear_cross_entropy_core,
        X,
        W,
        y,
        bias,
        options.weight,
        *_scalar_options(options, X.dtype),
        ignore_index=options.ignore_index,
        reduction=reduction,
        chunk_size=chunk_size,
        grad_output=np.asarray(grad_output, X.dtype),
    )
    return loss, {"X": dX, "W": dW} | ({} if bias is None else {"b": db})


@functools.partial(jax.jit, static_argnames=("ignore_index", "reduction", "chunk_size"))
def _linear_cross_entropy_checked(
    X: jax.Array,
    W: jax.Array,
    y: jax.Array,
    bias: jax.Array | None,
    weight: jax.Array | None,
    weight_valid: Any,
    scalars: tuple[jax.Array, jax.Array, jax.Array | None],
    grad_output: jax.Array,
    ignore_index: int | None,
    reduction: str,
    chunk_size: int | None,
) -> tuple[jax.Array, ...]:
    """``linear_cross_entropy_core`` and the inputs' verdict (``values_are_valid``) in one compiled program."""
    results = linear_cross_entropy_core(
        X, W, y, bias, weight, *scalars, ignore_index=ignore_index, reduction=reduction, chunk_size=chunk_size,
        grad_output=grad_output,
    )  # fmt: skip
    values = (X, W) if bias is None else (X, W, bias)
    valid = values_are_valid(values, y, None, ignore_index, W.shape[1], masked=(False, False, True)[: len(values)])
    valid &= masks_are_valid(bias, y, ignore_index, scalars[0]) & cotangent_is_valid(grad_output)
    return *results, valid & weight_valid


def linear_cross_entropy(
    X: Any,
    W: Any,
    y: Any,
    *,
    bias: Any = None,
    reduction: str = "mean",
    grad_output: Any = None,
    weight: Any = None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    chunk_size: int | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Linear cross-entropy (eq. 25), chunked over classes by eqs. (26)-(27), compiled; NumPy or device arrays.

    The same two passes as ``manual.vectorized.linear_cross_entropy``, as two
    ``jax.lax.fori_loop`` over (N x chunk) blocks of logits: never an (N, V)
    array unless one chunk covers V (``chunk_size`` counts classes; default
    about 4M logits per block). Options: eqs. (17)-(24). ``reduction="none"``
    returns the (N,) row losses (eq. 55); the gradients are the VJP at
    ``grad_output`` (eq. 54: a scalar for "mean" and "sum", (N,) for "none");
    a ``bias`` of ``-inf`` masks its class for every row (eq. 56).

    NumPy in, NumPy out (a Python float loss, or (N,)). If any array argument is a
    ``jax.Array`` (possibly sharded over the batch on a device mesh), the
    inputs stay on their devices and the results are ``jax.Array``: a 0-d
    loss and gradients laid out as XLA chooses (``dX`` sharded like ``X``).
    Checks on device arrays read their metadata, and their values inside the
    compiled program, beside the loss (one boolean comes to the host; a bad
    input then raises the contract's error); an overflow of the logits is not
    checked there. The label entry is eq. (30), the other classes' sum kept as
    its own running quantity, so ``p_y`` near 1 cancels nothing.
    On a device mesh (any ``jax.make_mesh``, Explicit or Auto axes, with or
    without ``jax.set_mesh``), ``X`` and ``y`` may be split over a batch axis
    and ``W``'s columns, ``bias`` and ``weight`` over a vocabulary axis: the
    vocabulary-parallel form of eqs. (45)-(53) runs under ``jax.shard_map``
    (``manual.sharded``), and ``dX``, ``dW``, ``db`` come back sharded like
    ``X``, ``W`` and ``bias`` (and "none"'s row losses like ``y``); there
    the value checks run before the loss.

    >>> import numpy as np
    >>> from manual import compiled
    >>> loss, grads = compiled.linear_cross_entropy(np.ones((2, 1)), np.zeros((1, 3)), [0, 2], chunk_size=2)
    >>> round(loss, 6), grads["W"].round(6).tolist()
    (1.098612, [[-0.166667, 0.333333, -0.166667]])
    >>> bias = np.array([0.0, 0.0, -np.inf])  # class 2 masked
    >>> losses, grads = compiled.linear_cross_entropy(np.ones((2, 1)), np.zeros((1, 3)), [0, 1], bias=bias,
    ...                                               reduction="none", grad_output=[1.0, -2.0])
    >>> losses.round(6).tolist(), grads["b"].tolist()
    ([0.693147, 0.693147], [-1.5, 1.5, 0.0])
    """
    if not is_device_call(X, W, y, bias, weight, grad_output):
        return _linear_cross_entropy_on_host(
            X,
            W,
            y,
            bias=bias,
            reduction=reduction,
            grad_output=grad_output,
            weight=weight,
            ignore_index=ignore_index,
            label_smoothing=label_smoothing,
            z_loss=z_loss,
            softcap=softcap,
            chunk_size=chunk_size,
        )
    dtype = np.dtype(np.float32 if all(_dtype(a) == np.float32 for a in (X, W, bias) if a is not None) else np.float64)
    with jax.enable_x64(dtype == np.float64):  # NumPy arguments beside device ones are moved in the right width
        X, W, y, bias = (a if a is None or isinstance(a, jax.Array) else jnp.asarray(a) for a in (X, W, y, bias))
    if weight is not None and not isinstance(weight, jax.Array):
        with jax.enable_x64(_dtype(weight).itemsize == 8):
            weight = jnp.asarray(weight)
    reduction = check_reduction(reduction, LOSS_REDUCTIONS)
    chunk_size = check_chunk_size(chunk_size)
    options = check_options(
        W.shape[1], ignore_index=ignore_index, label_smoothing=label_smoothing, z_loss=z_loss, softcap=softcap
    )
    g, g_given = _cotangent_on_device(grad_output, reduction, X.shape[0], dtype)
    check = functools.partial(_check_on_device, label_smoothing=options.label_smoothing)
    if sharded.spans_devices(X, W, y, bias, weight, g_given):  # on a device mesh: eqs. (45)-(53), manual/sharded.py
        return sharded.linear_cross_entropy(
            X, W, y, bias, weight, options, dtype, reduction=reduction, chunk_size=chunk_size, check=check,
            grad_output=(g, g_given),
        )  # fmt: skip
    _check_linear_layout_on_device(X, W, y, bias, weight)
    cast_weight, weight_valid = _class_weight_on_device(weight, reduction == "mean", dtype)
    with jax.enable_x64(dtype == np.float64):
        loss, dX, dW, db, valid = _linear_cross_entropy_checked(
            X.astype(dtype),
            W.astype(dtype),
            y,
            None if bias is None else bias.astype(dtype),
            cast_weight,
            weight_valid,
            _scalar_options(options, dtype),
            g,
            ignore_index=options.ignore_index,
            reduction=reduction,
            chunk_size=chunk_size,
        )
    if not valid:  # the one value that comes to the host; the exact search runs only for bad input
        check(X, W, y, bias, weight, options.ignore_index, grad_output=(g, g_given))
        raise ValueError("the inputs hold a value the contract refuses")  # not reached: the search names it
    return loss, {"X": dX, "W": dW} | ({} if bias is None else {"b": db})
