"""Every variant timed side by side, one table per workload (pytest-benchmark).

Two kinds of table:

* ``numpy``: each variant of ``manual.VARIANTS`` through its public function
  (NumPy in, NumPy out, input checks included), beside the machine's floors
  over an (N, C) array of the same dtype: one ``np.exp`` pass, one copy pass
  (a read and a write of the same bytes) and the BLAS row-sum pass ``S @ 1``.
* ``jax``: on device arrays, the compiled variant's jitted core (the closed form)
  beside ``jax.jit(jax.value_and_grad(...))`` of the reference loss (autodiff)
  and a jitted ``jnp.exp`` pass, compilation excluded, results blocked on, the
  same dtype on both sides.

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
from benchmarks.workloads import WITH_OPTIONS, inputs, public_name, scores_shape, skip_reason
from manual import compiled
from reference import losses

FUNCTIONS = ("softmax_loss", WITH_OPTIONS, "linear_loss", "two_layer_loss")
DTYPES = [np.float64, np.float32]
# What no NumPy implementation of the loss can beat: it must exponentiate, read S and write dS.
NUMPY_FLOORS = {
    "np.exp floor": np.exp,
    "copy floor": np.copy,
    "row-sum floor": lambda S: S @ np.ones(S.shape[1], S.dtype),
}
JAX_CONTENDERS = ("compiled core", "jax autodiff", "jnp.exp floor")

AUTODIFF = {
    "softmax_loss": jax.jit(jax.value_and_grad(losses.softmax_loss_value)),
    "linear_loss": jax.jit(functools.partial(jax.value_and_grad(losses.linear_loss_value), reduction="mean")),
    "two_layer_loss": jax.jit(jax.value_and_grad(losses.two_layer_loss_value)),
}
CORES = {
    "softmax_loss": compiled.softmax_loss_core,
    "linear_loss": compiled.linear_loss_core,
    "two_layer_loss": compiled.two_layer_loss_core,
}


def with_options(contender: str, options: dict, dtype) -> functools.partial:
    """``fn(S, y)`` with the options bound: the compiled variant's options core, or autodiff of the reference."""
    weight = jnp.asarray(options["weight"])
    if contender == "compiled core":
        numbers = {key: jnp.asarray(options[key], dtype) for key in ("label_smoothing", "z_loss", "softcap")}
        return functools.partial(
            compiled.softmax_loss_options_core, weight=weight, ignore_index=options["ignore_index"], **numbers
        )
    return functools.partial(jax.jit(jax.value_and_grad(losses.softmax_loss_value)), **{**options, "weight": weight})


def describe(benchmark, kind: str, function: str, shape, dtype, contender: str) -> None:
    N, C = scores_shape(function, shape)
    name = np.dtype(dtype).name
    benchmark.group = f"{function} {'x'.join(map(str, shape))} {name} [{kind}]"
    benchmark.extra_info.update(
        kind=kind,
        function=function,
        shape=list(shape),
        dtype=name,
        contender=contender,
        scores_elements=N * C,
        variants=list(manual.VARIANTS),
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
    assert np.isfinite(loss)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("contender", JAX_CONTENDERS)
def test_jax_on_device(benchmark, workload, contender, dtype):
    function, shape = workload
    describe(benchmark, "jax", function, shape, dtype, contender)
    args, kwargs = inputs(function, shape, dtype)
    with jax.enable_x64(dtype == np.float64):
        if contender == "jnp.exp floor":
            S = np.random.default_rng(1).standard_normal(scores_shape(function, shape)).astype(dtype)
            fn, device_args = jax.jit(jnp.exp), (jnp.asarray(S),)
        elif function == WITH_OPTIONS:
            fn, device_args = with_options(contender, kwargs, dtype), tuple(jnp.asarray(a) for a in args)
        else:
            fn = CORES[function] if contender == "compiled core" else AUTODIFF[function]
            device_args = jax.tree_util.tree_map(jnp.asarray, args)
            if "reg" in kwargs:
                device_args = (*device_args, jnp.asarray(kwargs["reg"], dtype))

        def run():
            return jax.block_until_ready(fn(*device_args))

        result = run()  # compile outside the timing
        leaves = jax.tree_util.tree_leaves(benchmark(run))
        assert all(leaf.dtype == dtype for leaf in leaves if jnp.issubdtype(leaf.dtype, jnp.floating))
        assert len(leaves) == len(jax.tree_util.tree_leaves(result))
