"""JAX targets: called with ``jax.Array`` arguments; a lone loss goes through ``jax.vjp`` at the case's cotangent.

Both values of a lone loss are judged: the plain call's, and the one
``jax.vjp`` computes (a ``custom_vjp``'s forward rule), which may differ. The
cotangent (eq. 54) is what a ``custom_vjp``'s backward rule receives.

Float64 cases run inside a local ``jax.enable_x64(True)`` context, so a target
written for JAX's default (x64 off) still computes in float64 there; float32
cases run with x64 off. No global JAX setting changes.

The target runs compiled, as JAX code normally does: one compilation per case
shape (at the oracle's cheaper optimization level), not one per operation as
eager dispatch would. A target that cannot be traced (Python control flow on
values) runs eagerly instead.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from reference.checker.kinds import Kind
from reference.checker.oracle import COMPILER_OPTIONS

NAME = "jax"
SECOND_VALUE = "the value jax.vjp returns (a custom_vjp's forward rule)"

# What tracing refuses (Python control flow on values, conversions to NumPy): such a function runs eagerly.
_TRACE_ERRORS = (
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerArrayConversionError,
    jax.errors.TracerBoolConversionError,
    jax.errors.TracerIntegerConversionError,
)
_programs: dict[tuple, Any] = {}
_lock = threading.Lock()


def _array(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _array(item) for key, item in value.items()}
    return jnp.asarray(value) if isinstance(value, np.ndarray) else value


def arguments(kind: Kind, inputs: Mapping[str, Any]) -> tuple[Any, ...]:
    return kind.call_args({name: _array(value) for name, value in inputs.items()})


def _compiled(what: Callable, key: tuple, args: tuple[Any, ...]) -> Callable:
    """``what`` compiled for the shapes of ``args``, once per ``key`` and shapes."""
    leaves, tree = jax.tree_util.tree_flatten(args)
    full = (*key, tree, tuple((np.shape(x), jnp.result_type(x)) for x in leaves))
    with _lock:
        program = _programs.get(full)
    if program is None:
        program = jax.jit(what).lower(*args).compile(compiler_options=COMPILER_OPTIONS)
        with _lock:
            _programs[full] = program
    return program


def cotangent(value: Any) -> Any:
    """The cotangent as the function receives it: a float, or a ``jax.Array`` (N,) of the case's dtype."""
    return jnp.asarray(value) if isinstance(value, np.ndarray) else value


@functools.cache
def _plain(fn: Callable, takes: bool) -> Callable:
    """``fn`` as a function of its arguments and the cotangent last (passed on as ``grad_output`` if it takes it).

    One object per target, so that its compiled programs are found again case after case.
    """

    def call(*arguments: Any) -> Any:
        *args, g = arguments
        return fn(*args, grad_output=g) if takes else fn(*args)

    return call


def _value_and_vjp(plain: Callable, kind: Kind) -> tuple[Callable, tuple[str, ...], tuple[int, ...]]:
    """``(*args, g) -> (value, VJP at g)``: ``jax.vjp`` of the loss in the differentiable arguments (eq. 54)."""
    names = tuple(dict.fromkeys(path[0] for path, _ in kind.differentiable))
    positions = tuple(kind.arguments.index(name) for name in names)

    def value_and_vjp(*arguments: Any) -> tuple[jax.Array, Any]:
        *args, g = arguments
        shape = jnp.shape(g)

        def loss_of(*differentiated: Any) -> jax.Array:
            call = list(args)
            for position, value in zip(positions, differentiated, strict=True):
                call[position] = value
            return jnp.reshape(plain(*call, g), shape)

        value, pullback = jax.vjp(loss_of, *(args[p] for p in positions))
        return value, pullback(jnp.asarray(g).astype(value.dtype))

    return value_and_vjp, names, positions


def _lone_loss(shape: Any, g: Any) -> bool:
    """A loss returned alone: one number, or for reduction "none" the (N,) row losses the cotangent matches."""
    return (
        isinstance(shape, jax.ShapeDtypeStruct)
        and shape.size == np.size(g)
        and len(shape.shape) <= max(np.ndim(g), 1)
        and jnp.issubdtype(shape.dtype, jnp.floating)
    )


# value_and_vjp's results for a lone loss, computed by invoke in the same program as the plain call
_differentiated: dict[int, tuple[Any, Any]] = {}


def invoke(fn: Callable, args: tuple[Any, ...], kind: Kind | None = None, grad_output: Any = None,
           takes: bool = False) -> Any:  # fmt: skip
    """``fn(*args)``, compiled; eagerly if it cannot be traced, or returns what is not arrays.

    A lone loss is compiled in one program with its VJP at ``grad_output``
    (one compilation a case shape instead of two); ``differentiate`` takes
    that program's value and gradients. ``takes``: ``fn`` is called with
    ``grad_output=`` too.
    """
    _differentiated.clear()  # one call at a time: nothing left from another call can be taken for this one's
    g = 1.0 if grad_output is None else grad_output
    plain, full = _plain(fn, takes), (*args, g)
    try:
        shape = jax.eval_shape(plain, *full)
    except _TRACE_ERRORS:
        return plain(*full)
    except TypeError:  # returns something that is not a pytree of arrays: let the verdict see it
        return plain(*full)
    if kind is not None and _lone_loss(shape, g):
        value_and_vjp, _, positions = _value_and_vjp(plain, kind)
        try:
            result, differentiated = _compiled(
                lambda *call: (plain(*call), value_and_vjp(*call)), ("both", fn, takes, positions), full
            )(*full)
        except _TRACE_ERRORS:  # traceable forward, untraceable derivative: each as it can
            return _compiled(plain, ("call", fn, takes), full)(*full)
        _differentiated[id(args)] = differentiated
        return result
    return _compiled(plain, ("call", fn, takes), full)(*full)


def differentiate(fn: Callable, kind: Kind, args: tuple[Any, ...], loss: Any, grad_output: Any = None,
                  takes: bool = False) -> tuple[Any, dict[str, Any]]:  # fmt: skip
    """The value and the VJP at ``grad_output`` that ``jax.vjp`` gives: a ``custom_vjp``'s rules compute both."""
    plain, full = _plain(fn, takes), (*args, 1.0 if grad_output is None else grad_output)
    value_and_vjp, names, positions = _value_and_vjp(plain, kind)
    done = _differentiated.pop(id(args), None)
    if done is not None:
        value, grads = done
    else:
        try:
            value, grads = _compiled(value_and_vjp, ("vjp", fn, takes, positions), full)(*full)
        except _TRACE_ERRORS:
            value, grads = value_and_vjp(*full)
    by_name = dict(zip(names, grads, strict=True))
    return value, {
        name: (by_name[path[0]][path[1]] if len(path) > 1 else by_name[path[0]]) for path, name in kind.differentiable
    }


def to_numpy(value: Any) -> Any:
    return np.asarray(value)


@contextmanager
def context(dtype: np.dtype) -> Iterator[None]:
    with jax.enable_x64(np.dtype(dtype) == np.float64):
        yield


# ------------------------------------------------------------------ the loss as JAX users write it
def cross_entropy(
    S: jax.Array,
    y: jax.Array,
    reduction: str = "mean",
    weight: Any = None,
    ignore_index: Any = None,
    label_smoothing: Any = 0.0,
    z_loss: Any = 0.0,
    softcap: Any = None,
) -> jax.Array:
    """Eqs. (17)-(21) and (55) as a JAX user writes them: ``jax.nn.log_softmax``, the label's entry picked out.

    Plain ``jax.vjp`` differentiates it, so its label entry is formed as
    ``p_iy - 1`` (eq. 29), by cancellation, as every framework's own
    cross-entropy forms it; the oracle (``reference.losses``) forms it as
    eq. (30) does. That is what this function is for: the yardstick of a
    low-precision check (``own``), the plain JAX target that every dtype's
    bound must let pass (the tests), the JAX peer of the margins sweep. The
    options may be traced values; ``jnp.where`` keeps a masked class's
    ``-inf`` (eq. 56) and an ignored row out of every product.

    >>> from reference.losses import softmax_loss_value
    >>> S = jnp.array([[2.0, 1.0, 0.1], [0.5, 2.5, -jnp.inf]]); y = jnp.array([0, 1])
    >>> print(f"{float(cross_entropy(S, y)):.5f} {float(softmax_loss_value(S, y)):.5f}")
    0.27198 0.27198
    """
    N, C = S.shape
    masked = jnp.isneginf(S)
    Z = S if softcap is None else jnp.where(masked, S, softcap * jnp.tanh(jnp.where(masked, 0.0, S) / softcap))
    log_p = jax.nn.log_softmax(Z, axis=1)
    w = jnp.ones(C, S.dtype) if weight is None else jnp.asarray(weight, S.dtype)
    kept = jnp.ones(N, bool) if ignore_index is None else y != ignore_index
    labels = jnp.where(kept, y, 0)
    w_y = jnp.where(kept, w[labels], 0)
    nll = jnp.where(kept, -jnp.take_along_axis(log_p, labels[:, None], axis=1)[:, 0], 0)
    smooth = jnp.where(kept, -jnp.sum(w * jnp.where(masked, 0, log_p), axis=1), 0)
    rows = (1 - label_smoothing) * w_y * nll + label_smoothing / C * smooth
    lse = jax.nn.logsumexp(Z, axis=1)
    penalties = jnp.where(kept & (z_loss > 0), z_loss * lse**2, 0)
    if reduction == "none":
        return rows + penalties
    if reduction == "sum":
        return jnp.sum(rows) + jnp.sum(penalties)
    denominator = jnp.sum(w_y)  # 0 when every row is ignored: the mean of nothing is NaN, its gradient 0
    loss = jnp.where(denominator > 0, jnp.sum(rows) / jnp.where(denominator > 0, denominator, 1), jnp.nan)
    return loss + jnp.sum(penalties) / jnp.maximum(jnp.sum(kept), 1)


def scores_loss(scores: jax.Array, y: jax.Array, reduction: str = "mean", **options: Any) -> jax.Array:
    """Kind "scores": the cross-entropy of the scores."""
    return cross_entropy(scores, y, reduction, **options)


def linear_loss(W: jax.Array, X: jax.Array, y: jax.Array, reg: Any, reduction: str = "mean",
                **options: Any) -> jax.Array:  # fmt: skip
    """Kind "linear": eq. (12) forward and eq. (3)'s penalty."""
    return cross_entropy(X @ W, y, reduction, **options) + 0.5 * reg * jnp.sum(W * W)


def two_layer_loss(params: Mapping[str, jax.Array], X: jax.Array, y: jax.Array, reg: Any, reduction: str = "mean",
                   **options: Any) -> jax.Array:  # fmt: skip
    """Kind "two_layer": eq. (7) forward, ``jax.nn.relu``, and eq. (3)'s penalty on both weights."""
    H1 = jax.nn.relu(X @ params["W1"] + params["b1"])
    S = H1 @ params["W2"] + params["b2"]
    return cross_entropy(S, y, reduction, **options) + 0.5 * reg * (
        jnp.sum(params["W1"] ** 2) + jnp.sum(params["W2"] ** 2)
    )


def linear_cross_entropy(X: jax.Array, W: jax.Array, y: jax.Array, bias: jax.Array | None = None,
                         reduction: str = "mean", **options: Any) -> jax.Array:  # fmt: skip
    """Kind "linear_ce": the dense logits ``X W + b`` (eq. 25), then the cross-entropy."""
    return cross_entropy(X @ W if bias is None else X @ W + bias, y, reduction, **options)


# kind -> the loss as JAX users write it: ``(*the kind's arguments, reduction="mean", **options)``
LOSSES: dict[str, Callable[..., jax.Array]] = {
    "scores": scores_loss,
    "linear": linear_loss,
    "two_layer": two_layer_loss,
    "linear_ce": linear_cross_entropy,
    "linear_ce without bias": linear_cross_entropy,
}


@functools.cache
def _own_program(kind: str, positions: tuple[int, ...]) -> Callable:
    """One jitted loss-and-VJP per kind (eq. 54): it compiles once per case shape and dtype."""
    value = LOSSES[kind]

    def value_and_vjp(*args: Any, g: jax.Array, reduction: str, options: Any) -> tuple[jax.Array, Any]:
        def of(*differentiated: Any) -> jax.Array:
            call = list(args)
            for position, argument in zip(positions, differentiated, strict=True):
                call[position] = argument
            return value(*call, reduction=reduction, **options)

        loss, pullback = jax.vjp(of, *(args[p] for p in positions))
        return loss, pullback(g.astype(loss.dtype))

    return jax.jit(value_and_vjp, static_argnames="reduction")


def own(
    kind: Kind,
    inputs: Mapping[str, Any],
    *,
    reduction: str,
    options: Mapping[str, Any],
    reg: float,
    grad_output: Any = None,
) -> tuple[Any, dict[str, np.ndarray]]:
    """Plain ``jax.vjp`` of the loss as JAX users write it (``LOSSES``), run in the inputs' (low-precision) dtype.

    The yardstick beside the bound: what JAX itself gets on the same inputs,
    label entry by cancellation included (not the oracle's eq. 30).
    ``reg`` is eq. (3)'s, ``grad_output`` the cotangent (eq. 54; None: 1); the result is read as float64.
    """
    names = tuple(dict.fromkeys(path[0] for path, _ in kind.differentiable))
    positions = tuple(kind.arguments.index(name) for name in names)
    with jax.enable_x64(False):
        args = list(arguments(kind, inputs))
        if "reg" in kind.arguments:
            args[kind.arguments.index("reg")] = reg
        dtype = next(a.dtype for a in jax.tree_util.tree_leaves(args) if hasattr(a, "dtype") and a.dtype.kind != "i")
        opts = dict(options)
        opts["weight"] = None if opts.get("weight") is None else jnp.asarray(np.asarray(opts["weight"]), dtype)
        if grad_output is None:
            grad_output = np.ones(len(inputs["y"])) if reduction == "none" else 1.0
        g = jnp.asarray(np.asarray(grad_output, np.float32))
        loss, grads = _own_program(kind.name, positions)(*args, g=g, reduction=reduction, options=opts)
    by_name = dict(zip(names, grads, strict=True))
    picked = {
        name: (by_name[path[0]][path[1]] if len(path) > 1 else by_name[path[0]]) for path, name in kind.differentiable
    }
    value = np.asarray(loss, np.float64)
    return (value if reduction == "none" else float(value)), {
        name: np.asarray(item, np.float64) for name, item in picked.items()
    }
