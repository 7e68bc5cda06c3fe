"""Every variant and its peers timed side by side, one table per workload (pytest-benchmark).

One table per workload (function, shape, dtype) holds three kinds of row:

* ``numpy``: each variant of ``manual.VARIANTS`` through its public function
  (NumPy in, NumPy out, input checks included), beside the machine's floors
  over an (N, C) array of the same dtype: one ``np.exp`` pass, one copy pass
  (a read and a write of the same bytes) and the BLAS row-sum pass ``S @ 1``.
* ``jax``: on device arrays, ``compiled (device)``, the compiled variant's
  public function (input checks included), its jitted core alone (the closed
  form), the peer ``jax autodiff``, ``jax.jit(jax.value_and_grad(...))`` of the
  plain loss as a user writes it (``benchmarks.peers.plain_loss``; with
  options, the reference loss), and a jitted ``jnp.exp`` pass; compilation
  excluded, results blocked on, the same dtype on every side.
* ``torch``: the peer ``torch``, ``F.cross_entropy`` and ``backward()`` on the
  CPU (softmax_loss workloads; skipped with a note where torch is missing).

The ``softmax_loss none`` workload (``reduction="none"``, a random cotangent)
times the per-row backward: its rows read against ``softmax_loss``'s at the
same shapes; its autodiff peer is ``jax.vjp`` of the plain per-row loss.

Plain ``pytest`` runs each benchmark once, as a smoke test; ``softmax-grad bench``
times them.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import manual
from benchmarks.peers import TORCH_MISSING, plain_loss, torch_module, torch_softmax_loss
from benchmarks.workloads import (
    PER_ROW,
    SOFTMAX_WORKLOADS,
    WITH_OPTIONS,
    inputs,
    public_name,
    scores_shape,
    skip_reason,
)
from manual import compiled
from reference import losses

FUNCTIONS = ("softmax_loss", WITH_OPTIONS, PER_ROW, "linear_loss", "two_layer_loss")
DTYPES = [np.float64, np.float32]
# What no NumPy implementation of the loss can beat: it must exponentiate, read S and write dS.
NUMPY_FLOORS = {
    "np.exp floor": np.exp,
    "copy floor": np.copy,
    "row-sum floor": lambda S: S @ np.ones(S.shape[1], S.dtype),
}
JAX_CONTENDERS = ("compiled (device)", "compiled core", "jax autodiff", "jnp.exp floor")


@jax.jit
def plain_loss_vjp(S: jax.Array, y: jax.Array, g: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The per-row losses as a JAX user writes them (eq. 55) and their backward at ``g`` by ``jax.vjp`` (eq. 54)."""
    rows, pullback = jax.vjp(lambda s: -jnp.take_along_axis(jax.nn.log_softmax(s, axis=1), y[:, None], axis=1)[:, 0], S)
    return rows, pullback(g)[0]


AUTODIFF = {
    "softmax_loss": jax.jit(jax.value_and_grad(plain_loss)),
    PER_ROW: plain_loss_vjp,
    "linear_loss": jax.jit(functools.partial(jax.value_and_grad(losses.linear_loss_value), reduction="mean")),
    "two_layer_loss": jax.jit(jax.value_and_grad(losses.two_layer_loss_value)),
}
CORES = {
    "softmax_loss": compiled.softmax_loss_core,
    "linear_loss": compiled.linear_loss_core,
    "two_layer_loss": compiled.two_layer_loss_core,
}


def with_options(contender: str, options: dict, dtype) -> functools.partial:
    """``fn(S, y)`` with the options bound: the compiled variant's public function or options core, or autodiff
    of the reference loss."""
    weight = jnp.asarray(options["weight"])
    if contender == "compiled (device)":
        return functools.partial(compiled.softmax_loss, **{**options, "weight": weight})
    if contender == "compiled core":
        numbers = {key: jnp.asarray(options[key], dtype) for key in ("label_smoothing", "z_loss", "softcap")}
        return functools.partial(
            compiled.softmax_loss_options_core, weight=weight, ignore_index=options["ignore_index"], **numbers
        )
    return functools.partial(jax.jit(jax.value_and_grad(losses.softmax_loss_value)), **{**options, "weight": weight})


def describe(benchmark, kind: str, function: str, shape, dtype, contender: str) -> None:
    N, C = scores_shape(function, shape)
    name = np.dtype(dtype).name
    benchmark.group = f"{function} {'x'.join(map(str, shape))} {name}"
    benchmark.extra_info.update(
        kind=kind,
        function=function,
        shape=list(shape),
        dtype=name,
        contender=contender,
        scores_elements=N * C,
        variants=list(manual.VARIANTS),
        missing_peers={} if torch_module() else {"torch": TORCH_MISSING},
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("contender", [*manual.VARIANTS, *NUMPY_FLOORS])
def test_numpy_interface(benchmark, workload, contender, dtype):
    function, shape = workload
    describe(benchmark, "numpy", function, shape, dtype, contender)
    if contender in NUMPY_FLOORS:
        S = np.random.default_rng(1).standard_normal(scores_shape(function, shape)).astype(dtype)
        assert benchmark(NUMPY_FLOORS[contender], S).dtype == dtype
        return
    reason = skip_reason(contender, function, shape)
    if reason:
        pytest.skip(reason)
    args, kwargs = inputs(function, shape, dtype)
    run = functools.partial(getattr(manual.VARIANTS[contender], public_name(function)), *args, **kwargs)
    if contender == "compiled":
        run()  # compile outside the timing
    loss, _ = benchmark(run)
    assert np.isfinite(loss).all()


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("contender", JAX_CONTENDERS)
def test_jax_on_device(benchmark, workload, contender, dtype):
    function, shape = workload
    if contender == "compiled (device)" and function not in SOFTMAX_WORKLOADS:
        pytest.skip("compiled takes device arrays in softmax_loss and linear_cross_entropy only")
    if contender == "compiled core" and function == PER_ROW:
        pytest.skip("the compiled core is timed on the mean; compiled (device) times the per-row backward")
    describe(benchmark, "jax", function, shape, dtype, contender)
    args, kwargs = inputs(function, shape, dtype)
    with jax.enable_x64(dtype == np.float64):
        if contender == "jnp.exp floor":
            S = np.random.default_rng(1).standard_normal(scores_shape(function, shape)).astype(dtype)
            fn, device_args = jax.jit(jnp.exp), (jnp.asarray(S),)
        elif function == WITH_OPTIONS:
            fn, device_args = with_options(contender, kwargs, dtype), tuple(jnp.asarray(a) for a in args)
        else:
            fn = {"compiled core": CORES.get(function), "jax autodiff": AUTODIFF[function]}.get(contender)
            if fn is None:  # the public function, checks included; NumPy-style keywords (reg) stay keywords
                fn = functools.partial(getattr(compiled, public_name(function)), **kwargs)
            device_args = jax.tree_util.tree_map(jnp.asarray, args)
            if function == PER_ROW:  # the cotangent is an array: a keyword of the public call, an argument of autodiff
                g = jnp.asarray(kwargs["grad_output"])
                if contender == "compiled (device)":
                    fn = functools.partial(compiled.softmax_loss, reduction="none", grad_output=g)
                else:
                    device_args = (*device_args, g)
            if "reg" in kwargs and contender != "compiled (device)":
                device_args = (*device_args, jnp.asarray(kwargs["reg"], dtype))

        def run():
            return jax.block_until_ready(fn(*device_args))

        result = run()  # compile outside the timing
        leaves = jax.tree_util.tree_leaves(benchmark(run))
        assert all(leaf.dtype == dtype for leaf in leaves if jnp.issubdtype(leaf.dtype, jnp.floating))
        assert len(leaves) == len(jax.tree_util.tree_leaves(result))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_torch_on_the_cpu(benchmark, workload, dtype):
    function, shape = workload
    if function not in SOFTMAX_WORKLOADS:
        pytest.skip("torch is timed on the softmax_loss workloads only")
    if torch_module() is None:
        pytest.skip(TORCH_MISSING)
    describe(benchmark, "torch", function, shape, dtype, "torch")
    (S, y), options = inputs(function, shape, dtype)
    loss, dS = benchmark(torch_softmax_loss(S, y, options))
    assert np.isfinite(loss).all() and dS.dtype == dtype
