"""The autodiff oracle: ``jax.vjp``, ``jax.value_and_grad`` and ``jax.jacobian`` of ``reference.losses``.

Every call computes in float64 inside a local ``jax.enable_x64`` context, so
importing or calling this module changes no global JAX setting. Results come
back as NumPy arrays of the input's floating dtype (a float32 input gets the
float64 result rounded once, at the end). Each derivative is one ``jax.jit``
program, compiled once per shape (about 0.2 s on 2 cores, far less than eager
mode's one compilation per primitive and shape) and cached by JAX.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from reference import losses
from softmax_grad.contract import (
    TEXTBOOK,
    LossOptions,
    jacobian_entry,
    linear_cross_entropy_entry,
    linear_loss_entry,
    softmax_entry,
    softmax_loss_entry,
    two_layer_loss_entry,
)

__all__ = ["linear_cross_entropy", "linear_loss", "softmax", "softmax_jacobian", "softmax_loss", "two_layer_loss"]

F = TypeVar("F", bound=Callable[..., Any])


def _in_float64(impl: F) -> F:
    """Run ``impl`` with JAX's 64-bit mode on, locally, and its array results as NumPy."""

    @functools.wraps(impl)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with jax.enable_x64(True):
            return jax.tree_util.tree_map(np.asarray, impl(*args, **kwargs))

    return wrapper  # type: ignore[return-value]


def _f64(a: np.ndarray) -> jax.Array:
    return jnp.asarray(a, dtype=jnp.float64)


def _vjp(loss: Callable[..., jax.Array], argnums: tuple[int, ...]) -> Callable[..., tuple[jax.Array, Any]]:
    """``(loss(*args), grad_output^T d loss / d args[argnums])`` by ``jax.vjp``: the backward of eq. (54).

    The loss is a scalar ("mean", "sum") or the (N,) row losses ("none"); its
    cotangent ``grad_output`` has the loss's shape. The other arguments are
    held fixed (closed over), keywords pass through.
    """

    def value_and_vjp(*args: Any, grad_output: jax.Array, **kwargs: Any) -> tuple[jax.Array, Any]:
        def of(*free: Any) -> jax.Array:
            full = list(args)
            for i, value in zip(argnums, free, strict=True):
                full[i] = value
            return loss(*full, **kwargs)

        value, pullback = jax.vjp(of, *(args[i] for i in argnums))
        grads = pullback(grad_output.astype(value.dtype))
        return value, grads[0] if len(argnums) == 1 else grads

    return value_and_vjp


_softmax = jax.jit(functools.partial(jax.nn.softmax, axis=1))
_jacobian = jax.jit(jax.jacobian(jax.nn.softmax))
_softmax_loss = jax.jit(_vjp(losses.softmax_loss_value, (0,)), static_argnames="reduction")
_linear_loss = jax.jit(jax.value_and_grad(losses.linear_loss_value), static_argnames="reduction")
_two_layer_loss = jax.jit(jax.value_and_grad(losses.two_layer_loss_value))
_linear_cross_entropy_dense = jax.jit(
    _vjp(losses.linear_cross_entropy_value, (0, 1)), static_argnames=("reduction", "ignore_index")
)
_linear_cross_entropy_biased = jax.jit(
    _vjp(losses.linear_cross_entropy_value, (0, 1, 3)), static_argnames=("reduction", "ignore_index")
)


@softmax_entry
@_in_float64
def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax, eq. (1), by ``jax.nn.softmax`` in float64.

    >>> import reference
    >>> reference.softmax([[1.0, 2.0, 3.0]]).round(4)
    array([[0.09  , 0.2447, 0.6652]])
    """
    return _softmax(_f64(scores))


@jacobian_entry
@_in_float64
def softmax_jacobian(x: np.ndarray) -> np.ndarray:
    """Eq. (13) by ``jax.jacobian(jax.nn.softmax)`` in float64.

    >>> import reference
    >>> reference.softmax_jacobian([0.0, 0.0]).tolist()
    [[0.25, -0.25], [-0.25, 0.25]]
    """
    return _jacobian(_f64(x))


@softmax_loss_entry
@_in_float64
def softmax_loss(
    scores: np.ndarray,
    y: np.ndarray,
    *,
    reduction: str = "mean",
    options: LossOptions = TEXTBOOK,
    grad_output: float | np.ndarray = 1.0,
) -> tuple[Any, Any]:
    """Loss of eqs. (2), (4), with the options of eqs. (17)-(21), and its gradient by ``jax.vjp``.

    ``y`` holds integer labels (N,) or soft targets (N, C); the options are
    those of ``torch.nn.functional.cross_entropy`` plus ``z_loss`` and
    ``softcap`` (README, "Loss options"). ``reduction="none"`` gives the (N,)
    row losses of eq. (55); the gradient is the vector-Jacobian product of
    eq. (54) at ``grad_output`` (a scalar, or one cotangent per row), and a
    ``-inf`` score is a masked class with gradient 0 (eq. 56).

    >>> import numpy as np, reference
    >>> loss, dS = reference.softmax_loss([[0.0, 0.0], [0.0, 0.0]], [0, 1])
    >>> round(loss, 6), dS.tolist()
    (0.693147, [[-0.25, 0.25], [0.25, -0.25]])
    >>> loss, dS = reference.softmax_loss([[0.0, 0.0], [0.0, 0.0]], [0, -100], ignore_index=-100)
    >>> round(loss, 6), dS.tolist()
    (0.693147, [[-0.5, 0.5], [0.0, 0.0]])
    >>> losses, dS = reference.softmax_loss([[0.0, 0.0], [0.0, -np.inf]], [0, 0], reduction="none", grad_output=[2, 3])
    >>> losses.round(6).tolist(), dS.tolist()
    ([0.693147, 0.0], [[-1.0, 1.0], [0.0, 0.0]])
    """
    targets = _f64(y) if y.ndim == 2 else jnp.asarray(y)
    g = _f64(grad_output)
    return _softmax_loss(_f64(scores), targets, reduction=reduction, grad_output=g, **_jax_options(options))


def _jax_options(options: LossOptions) -> dict[str, Any]:
    """The options as arguments of ``reference.losses``: float64 weights, plain numbers."""
    weight = None if options.weight is None else _f64(options.weight)
    return {
        "weight": weight,
        "ignore_index": options.ignore_index,
        "label_smoothing": options.label_smoothing,
        "z_loss": options.z_loss,
        "softcap": options.softcap,
    }


@linear_loss_entry
@_in_float64
def linear_loss(
    W: np.ndarray, X: np.ndarray, y: np.ndarray, *, reg: float = 0.0, reduction: str = "mean"
) -> tuple[Any, Any]:
    """Loss of eq. (12)'s classifier plus eq. (3), and dL/dW by ``jax.value_and_grad``.

    >>> import numpy as np, reference
    >>> loss, dW = reference.linear_loss(np.zeros((2, 2)), [[1.0, 2.0]], [1])
    >>> round(loss, 6), dW.tolist()
    (0.693147, [[0.5, -0.5], [1.0, -1.0]])
    """
    return _linear_loss(_f64(W), _f64(X), jnp.asarray(y), reg, reduction=reduction)


@two_layer_loss_entry
@_in_float64
def two_layer_loss(params: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray, *, reg: float = 0.0) -> tuple[Any, Any]:
    """Loss of eqs. (3), (4), (7) and every parameter's gradient by ``jax.value_and_grad``.

    >>> import numpy as np, reference
    >>> params = {"W1": np.eye(2), "b1": np.zeros(2), "W2": np.eye(2), "b2": np.zeros(2)}
    >>> loss, grads = reference.two_layer_loss(params, [[1.0, -1.0]], [0], reg=0.1)
    >>> round(loss, 6), grads["b2"].round(6).tolist()
    (0.513262, [-0.268941, 0.268941])
    """
    params64 = {key: _f64(value) for key, value in params.items()}
    return _two_layer_loss(params64, _f64(X), jnp.asarray(y), reg)


@linear_cross_entropy_entry
@_in_float64
def linear_cross_entropy(
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
    """Linear cross-entropy, eq. (25) in its dense form, with the options of eqs. (17)-(21), by autodiff.

    The whole (N, V) logits ``X W + 1 b^T`` are formed, in float64, and
    ``jax.vjp`` pulls ``grad_output`` back to ``X``, ``W`` and ``b`` (eq. 54;
    the (N,) row losses of eq. (55) for ``reduction="none"``; a ``-inf`` bias
    masks its class, eq. 56): the oracle for every chunked implementation.
    ``chunk_size`` is accepted for the common signature and changes nothing here.

    >>> import numpy as np, reference
    >>> loss, grads = reference.linear_cross_entropy(np.ones((2, 1)), np.zeros((1, 2)), [0, 1], bias=np.zeros(2))
    >>> round(loss, 6), grads["W"].tolist(), grads["b"].tolist()
    (0.693147, [[0.0, 0.0]], [0.0, 0.0])
    """
    options_ = {**_jax_options(options), "grad_output": _f64(grad_output)}
    if bias is None:
        loss, (dX, dW) = _linear_cross_entropy_dense(
            _f64(X), _f64(W), jnp.asarray(y), None, reduction=reduction, **options_
        )
        return loss, {"X": dX, "W": dW}
    loss, (dX, dW, db) = _linear_cross_entropy_biased(
        _f64(X), _f64(W), jnp.asarray(y), _f64(bias), reduction=reduction, **options_
    )
    return loss, {"X": dX, "W": dW, "b": db}
