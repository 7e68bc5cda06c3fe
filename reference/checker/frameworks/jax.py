"""JAX targets: called with ``jax.Array`` arguments; a lone loss goes through ``jax.value_and_grad``.

Both values of a lone loss are judged: the plain call's, and the one
``value_and_grad`` computes (a ``custom_vjp``'s forward rule), which may differ.

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
from reference.checker.oracle import COMPILER_OPTIONS, VALUE_FUNCTIONS

NAME = "jax"
SECOND_VALUE = "the value jax.value_and_grad returns (a custom_vjp's forward rule)"

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


def _value_and_grad(fn: Callable, kind: Kind) -> tuple[Callable, tuple[str, ...], tuple[int, ...]]:
    names = tuple(dict.fromkeys(path[0] for path, _ in kind.differentiable))
    positions = tuple(kind.arguments.index(name) for name in names)

    def loss_of(*call: Any) -> jax.Array:
        return jnp.reshape(fn(*call), ())

    return jax.value_and_grad(loss_of, argnums=positions), names, positions


def _lone_loss(shape: Any) -> bool:
    return isinstance(shape, jax.ShapeDtypeStruct) and shape.size == 1 and jnp.issubdtype(shape.dtype, jnp.floating)


# value_and_grad's results for a lone loss, computed by invoke in the same program as the plain call
_differentiated: dict[int, tuple[Any, Any]] = {}


def invoke(fn: Callable, args: tuple[Any, ...], kind: Kind | None = None) -> Any:
    """``fn(*args)``, compiled; eagerly if it cannot be traced, or returns what is not arrays.

    A lone loss is compiled in one program with its ``value_and_grad`` (one
    compilation a case shape instead of two); ``differentiate`` takes that
    program's value and gradients.
    """
    _differentiated.clear()  # one call at a time: nothing left from another call can be taken for this one's
    try:
        shape = jax.eval_shape(fn, *args)
    except _TRACE_ERRORS:
        return fn(*args)
    except TypeError:  # returns something that is not a pytree of arrays: let the verdict see it
        return fn(*args)
    if kind is not None and _lone_loss(shape):
        value_and_grad, _, positions = _value_and_grad(fn, kind)
        try:
            result, differentiated = _compiled(
                lambda *call: (fn(*call), value_and_grad(*call)), ("both", fn, positions), args
            )(*args)
        except _TRACE_ERRORS:  # traceable forward, untraceable derivative: each as it can
            return _compiled(fn, ("call", fn), args)(*args)
        _differentiated[id(args)] = differentiated
        return result
    return _compiled(fn, ("call", fn), args)(*args)


def differentiate(fn: Callable, kind: Kind, args: tuple[Any, ...], loss: Any) -> tuple[Any, dict[str, Any]]:
    """The value and the gradients ``jax.value_and_grad`` gives: a ``custom_vjp``'s forward rule computes the value."""
    value_and_grad, names, positions = _value_and_grad(fn, kind)
    done = _differentiated.pop(id(args), None)
    if done is not None:
        value, grads = done
    else:
        try:
            value, grads = _compiled(value_and_grad, ("grad", fn, positions), args)(*args)
        except _TRACE_ERRORS:
            value, grads = value_and_grad(*args)
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


@functools.cache
def _own_program(kind: str, positions: tuple[int, ...]) -> Callable:
    """One jitted ``value_and_grad`` per kind: it compiles once per case shape and dtype."""
    return jax.jit(jax.value_and_grad(VALUE_FUNCTIONS[kind], argnums=positions), static_argnames="reduction")


def own(
    kind: Kind, inputs: Mapping[str, Any], *, reduction: str, options: Mapping[str, Any], reg: float
) -> tuple[float, dict[str, np.ndarray]]:
    """Plain ``jax.value_and_grad`` of the oracle's own loss definition, run in the inputs' (low-precision) dtype.

    The yardstick beside the bound: what JAX itself gets on the same inputs.
    ``reg`` is eq. (3)'s; the result is read as float64.
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
        loss, grads = _own_program(kind.name, positions)(*args, reduction=reduction, options=opts)
    by_name = dict(zip(names, grads, strict=True))
    picked = {
        name: (by_name[path[0]][path[1]] if len(path) > 1 else by_name[path[0]]) for path, name in kind.differentiable
    }
    return float(loss), {name: np.asarray(value, np.float64) for name, value in picked.items()}
