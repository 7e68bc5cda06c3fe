"""The checker's oracle: ``jax.vjp`` of ``reference.losses`` at the case's cotangent, with every loss option.

The public ``reference.autodiff`` functions take the options for the scores
only; the checker needs them (and every reduction, "none" included) for every
kind, so it differentiates the same loss definitions here, in float64 inside a
local ``jax.enable_x64`` context (no global JAX setting changes). The gradient
is the vector-Jacobian product at the cotangent (derivation eq. 54): for "mean"
and "sum" a scalar, for "none" one per row of the per-row losses (eq. 55),
which ``reference.losses`` writes, masked classes (``-inf``, eq. 56) included. Each kind's
derivative is one ``jax.jit`` program: the options are traced arguments, so
one compilation per case shape serves every value of ``reg``, ``z_loss`` or
``label_smoothing``; ``None`` options (no weight, no softcap, no ignore_index)
are empty pytrees and select their own program, as they should.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from reference import losses
from reference.checker.kinds import Kind
from softmax_grad import bounds as error_bounds


def _softmax_loss(S: jax.Array, y: jax.Array, reduction: str, options: Mapping[str, Any]) -> jax.Array:
    """Eqs. (2), (4), (17)-(21), (55), (56): ``reference.losses``' loss of scores ``S``, masks allowed."""
    return losses.softmax_loss_value(S, y, reduction, **options)


def _scores_value(S: jax.Array, y: jax.Array, *, reduction: str, options: Mapping[str, Any]) -> jax.Array:
    """Eqs. (2), (4), (17)-(21), (55)-(56)."""
    return _softmax_loss(S, y, reduction, options)


def _linear_value(
    W: jax.Array, X: jax.Array, y: jax.Array, reg: jax.Array, *, reduction: str, options: Mapping[str, Any]
) -> jax.Array:
    """Eq. (12) forward plus eq. (3)."""
    return losses.linear_loss_value(W, X, y, reg, reduction, **options)


def _two_layer_value(
    params: Mapping[str, jax.Array],
    X: jax.Array,
    y: jax.Array,
    reg: jax.Array,
    *,
    reduction: str,
    options: Mapping[str, Any],
    relu_gate_at_zero: bool = False,
) -> jax.Array:
    """Eq. (7) forward, then eqs. (3)-(4), at either reduction.

    ``relu_gate_at_zero`` takes the ReLU's derivative at exactly 0 as 1 instead
    of eq. (10)'s 0: the other valid subgradient, which a user's code may choose.
    """
    Z1 = X @ params["W1"] + params["b1"]
    H1 = jnp.where(Z1 >= 0, Z1, 0.0) if relu_gate_at_zero else jax.nn.relu(Z1)
    S = H1 @ params["W2"] + params["b2"]
    return losses.softmax_loss_value(S, y, reduction, **options) + losses.l2_penalty(reg, params["W1"], params["W2"])


def _linear_ce_value(
    X: jax.Array,
    W: jax.Array,
    y: jax.Array,
    bias: jax.Array | None = None,
    *,
    reduction: str,
    options: Mapping[str, Any],
) -> jax.Array:
    """Eq. (25): the loss of the logits ``X W + b``, with eqs. (17)-(21); a bias of -inf masks a class (eq. 56)."""
    S = X @ W if bias is None else X @ W + bias
    return _softmax_loss(S, y, reduction, options)


VALUE_FUNCTIONS: dict[str, Callable[..., jax.Array]] = {
    "scores": _scores_value,
    "linear": _linear_value,
    "two_layer": _two_layer_value,
    "linear_ce": _linear_ce_value,
    "linear_ce without bias": _linear_ce_value,
}


# Compiling is most of a check's time, and the oracle's programs are small: XLA's cheaper
# optimization level halves the compilation (the results agree to rounding; the comparison is at 1e-11).
COMPILER_OPTIONS = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
_programs: dict[tuple, Any] = {}
_lock = threading.Lock()


@functools.cache
def _derivative(kind: str, argnums: tuple[int, ...]) -> Callable[..., Any]:
    """The loss and its vector-Jacobian product at a cotangent (eq. 54), one jitted program per kind."""
    statics = ("reduction", "relu_gate_at_zero") if kind == "two_layer" else ("reduction",)
    value = VALUE_FUNCTIONS[kind]

    def value_and_vjp(*args: Any, cotangent: jax.Array, options: Any, **static: Any) -> tuple[jax.Array, tuple]:
        def of(*differentiated: Any) -> jax.Array:
            full = list(args)
            for position, argument in zip(argnums, differentiated, strict=True):
                full[position] = argument
            return value(*full, options=options, **static)

        loss, pullback = jax.vjp(of, *(args[i] for i in argnums))
        return loss, pullback(cotangent.astype(loss.dtype))

    return jax.jit(value_and_vjp, static_argnames=statics)


def _run(kind: str, argnums: tuple[int, ...], args: tuple, options: dict, cotangent: Any, **static: Any) -> Any:
    """The compiled program for these argument shapes (compiled once, ahead of time), called on them."""
    leaves, tree = jax.tree_util.tree_flatten((args, options, cotangent))
    key = (kind, argnums, tuple(sorted(static.items())), tree, tuple((x.shape, x.dtype) for x in leaves))
    with _lock:
        program = _programs.get(key)
    if program is None:
        lowered = _derivative(kind, argnums).lower(*args, cotangent=cotangent, options=options, **static)
        program = lowered.compile(compiler_options=COMPILER_OPTIONS)
        with _lock:
            _programs[key] = program
    return program(*args, cotangent=cotangent, options=options)


def register(kind: str, value: Callable[..., jax.Array]) -> None:
    """Add the loss definition of a new kind: ``value(*arguments, reduction=..., options=...)``."""
    VALUE_FUNCTIONS[kind] = value


def _as_jax(value: Any) -> Any:
    """Arrays and numbers as float64 (or integer) ``jax.Array``: no weak types, so the programs' keys are plain."""
    if isinstance(value, Mapping):
        return {key: _as_jax(item) for key, item in value.items()}
    if value is None:
        return None
    arr = np.asarray(value)
    return jnp.asarray(arr, dtype=jnp.float64 if arr.dtype.kind == "f" else jnp.int64)


def expected(
    kind: Kind,
    arguments: tuple[Any, ...],
    *,
    reduction: str,
    options: Mapping[str, Any],
    grad_output: Any = None,
    **static: Any,
) -> tuple[Any, dict[str, np.ndarray]]:
    """The loss and its vector-Jacobian product at ``grad_output`` (NumPy, float64, named as ``kind`` names them).

    ``arguments`` are NumPy arrays (float32 inputs are read as the float64
    numbers they are), ``reg`` a float, in the kind's call order.
    ``grad_output`` is the loss's cotangent (eq. 54): a float for "mean" and
    "sum" (None: 1, the gradient), an (N,) array for "none" (None: ones). The
    loss is a float, or for "none" the (N,) per-row losses (eq. 55).
    """
    names = tuple(dict.fromkeys(path[0] for path, _ in kind.differentiable))
    argnums = tuple(kind.arguments.index(name) for name in names)
    if grad_output is None:
        rows = np.shape(arguments[kind.arguments.index("y")])[0]
        grad_output = np.ones(rows) if reduction == "none" else 1.0
    with jax.enable_x64(True):
        loss, gradients = _run(
            kind.name,
            argnums,
            tuple(_as_jax(a) for a in arguments),
            _as_jax(dict(options)),
            jnp.asarray(grad_output, jnp.float64),
            reduction=reduction,
            **static,
        )
        by_argument = dict(zip(names, gradients, strict=True))
        named = {
            name: np.asarray(by_argument[path[0]][path[1]] if len(path) > 1 else by_argument[path[0]], np.float64)
            for path, name in kind.differentiable
        }
        return (np.asarray(loss, np.float64) if reduction == "none" else float(loss)), named


def _pad(value: Any, axes: Any, sizes: Mapping[str, int], fill: int) -> Any:
    if isinstance(value, Mapping):
        return {key: _pad(item, axes[key], sizes, fill) for key, item in value.items()}
    widths = [(0, sizes.get(axis, n) - n) for axis, n in zip(axes, np.shape(value), strict=True)]
    return np.pad(value, widths, constant_values=fill if value.dtype.kind in "iu" else 0)


def padded(kind: Kind, inputs: Mapping[str, Any], sizes: Mapping[str, int], sentinel: int) -> dict[str, Any]:
    """``inputs`` grown to ``sizes`` along every axis but the classes', without changing the loss or its gradients.

    New rows carry the label ``sentinel``, which the loss ignores (eq. 20: they
    add nothing, to the sum or to the mean's denominator); new hidden or input
    dimensions are zero in every array, so every score stays what it was and
    their gradients are 0 (and cut off by ``unpadded``). One compiled program
    then serves every case of one class count: compiling is most of a check's time.
    """
    grown = dict(inputs)
    for name, axes in kind.axes.items():
        grown[name] = _pad(inputs[name], axes, sizes, sentinel)
    return grown


def unpadded(gradients: Mapping[str, np.ndarray], kind: Kind, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Each gradient cut back to the shape of the input it belongs to."""
    cut = {}
    for path, name in kind.differentiable:
        original = inputs[path[0]][path[1]] if len(path) > 1 else inputs[path[0]]
        cut[name] = gradients[name][tuple(slice(0, n) for n in np.shape(original))].copy()
    return cut


def expected_many(jobs: list[Callable[[], Any]], workers: int = 4) -> list[Any]:
    """Run oracle calls side by side: each case shape compiles once, and compilations overlap."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda job: job(), jobs))


def rounded(inputs: Mapping[str, Any], dtype: np.dtype) -> dict[str, Any]:
    """``inputs`` rounded to ``dtype`` and read back as float64: the numbers a low-precision target is given.

    The oracle differentiates these exact numbers in float64, so only the
    target's own arithmetic is judged, never the rounding of its inputs.
    """

    def one(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {key: one(item) for key, item in value.items()}
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            return value.astype(dtype).astype(np.float64)
        return value

    return {name: one(value) for name, value in inputs.items()}


def bounds(
    kind: Kind,
    inputs: Mapping[str, Any],
    dtype: np.dtype,
    *,
    reduction: str,
    options: Mapping[str, Any],
    reg: float,
    grad_output: Any = None,
) -> dict[str, Any]:
    """Each output's rounding-error bound at these (rounded) ``inputs`` (docs/derivation.md section 9).

    Named as ``kind`` names its outputs, with ``"loss"``; ``reg`` is eq. (3)'s;
    the gradients' bounds are those of the VJP at ``grad_output`` (eq. 54; None: 1).
    In float64 the bound is doubled: the oracle is a float64 computation too,
    so two correct results may differ by twice it.
    """
    prec = error_bounds.precision(dtype)
    opts = {key: value for key, value in options.items()}
    opts["weight"] = None if opts.get("weight") is None else np.asarray(opts["weight"], np.float64)
    if grad_output is not None:  # the VJP kinds' (linear and two_layer take none)
        opts["grad_output"] = grad_output
    y = np.asarray(inputs["y"])
    name = kind.name
    if name == "scores":
        loss, _, dS = error_bounds.scores_bounds(
            inputs["scores"], y, np.zeros_like(inputs["scores"]), prec, reduction=reduction, **opts
        )
        out: dict[str, Any] = {"loss": loss, "dscores": dS}
    elif name == "linear":
        out = error_bounds.linear_bounds(inputs["W"], inputs["X"], y, reg, prec, reduction=reduction, **opts)
    elif name == "two_layer":
        out = error_bounds.two_layer_bounds(inputs["params"], inputs["X"], y, reg, prec, reduction=reduction, **opts)
    elif name.startswith("linear_ce"):
        bias = inputs.get("bias") if name == "linear_ce" else None
        out = error_bounds.linear_ce_bounds(inputs["X"], inputs["W"], y, bias, prec, reduction=reduction, **opts)
    else:
        raise ValueError(f"no rounding-error bound for kind {name!r}")
    if np.dtype(dtype) == np.float64:
        out = {key: 2 * value for key, value in out.items()}
    return out


def logits(kind: Kind, inputs: Mapping[str, Any]) -> np.ndarray:
    """The scores the loss sees (before any softcap), in float64 NumPy, for the diagnoses."""
    if kind.name == "scores":
        return np.asarray(inputs["scores"], np.float64)
    if kind.name == "linear":
        return inputs["X"] @ inputs["W"]
    if kind.name == "two_layer":
        p = inputs["params"]
        return np.maximum(inputs["X"] @ p["W1"] + p["b1"], 0.0) @ p["W2"] + p["b2"]
    bias = inputs.get("bias") if kind.name == "linear_ce" else None
    return inputs["X"] @ inputs["W"] + (0.0 if bias is None else bias)
