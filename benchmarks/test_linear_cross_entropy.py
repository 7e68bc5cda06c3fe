"""Linear cross-entropy at vocabulary scale: time and working memory, dense against chunked.

Two tables per workload (N, D, V), float32, one per framework:

* ``numpy lce``: ``numpy dense``, the plain max-shift form that holds the (N, V)
  logits (eq. 25); ``vectorized``, the suite's class-chunked two-pass form
  (eqs. 26-27, default chunk); ``numpy rows blocked``, the other design
  (eq. 29, blocks of 128 rows, textbook loss only), kept to measure the choice;
  ``vectorized none``, the same with ``reduction="none"`` and a random
  cotangent (eqs. 54-55): the per-row backward's cost beside the mean's.
  Working memory: tracemalloc's peak during one call, less the returned
  gradients, measured in a separate call from the timed ones.
* ``jax lce``: ``jax autodiff``, ``jax.jit(jax.value_and_grad(...))`` of the
  dense reference loss; ``compiled core``, the class-chunked
  ``manual.compiled.linear_cross_entropy_core`` (default chunk);
  ``compiled (device)``, the public ``manual.compiled.linear_cross_entropy``
  on device arrays, input checks included. Working memory: the compiled
  executable's ``memory_analysis().temp_size_in_bytes`` (arguments and
  outputs excluded), compilation outside the timing.
* ``torch lce``: ``torch dense`` (``F.linear`` + ``F.cross_entropy``) and
  ``torch chunked`` (``F.linear_cross_entropy`` with its chunking options),
  NumPy in and out through ``torch.from_numpy``. Working memory: the growth of
  a fresh process's peak resident memory over one call
  (``benchmarks.peers.torch_working_memory``). Skipped without torch.

All contenders of a workload share one table.

Plain ``pytest`` runs each contender once on a tiny workload as a smoke test.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks.conftest import bench_size
from benchmarks.peers import TORCH_MISSING, torch_linear_cross_entropy, torch_module, torch_working_memory
from benchmarks.workloads import LINEAR_CE, LINEAR_CE_SMOKE, cotangent, linear_ce_inputs, working_memory
from manual import compiled, vectorized
from reference import losses

NUMPY_CONTENDERS = ("numpy dense", "vectorized", "vectorized none", "numpy rows blocked")
JAX_CONTENDERS = ("jax autodiff", "compiled core", "compiled (device)")
TORCH_CONTENDERS = ("torch dense", "torch chunked")
ROW_BLOCK = 128


def numpy_dense(X: np.ndarray, W: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
    """The dense form (25) as one would first write it: the max shift (14), the loss (15), dS (6)."""
    N = X.shape[0]
    rows = np.arange(N)
    S = X @ W
    S = S - S.max(axis=1, keepdims=True)  # eq. (14)
    P = np.exp(S)
    sums = P.sum(axis=1, keepdims=True)
    loss = float(np.mean(np.log(sums[:, 0]) - S[rows, y]))  # eq. (15)
    dS = P / (N * sums)
    dS[rows, y] -= 1.0 / N  # eq. (6)
    return loss, {"X": dS @ W.T, "W": X.T @ dS}


def numpy_rows_blocked(X: np.ndarray, W: np.ndarray, y: np.ndarray, block: int = ROW_BLOCK) -> tuple[float, dict]:
    """Eq. (29): blocks of ``block`` rows hold all V logits; dW is read and rewritten once per block."""
    N = X.shape[0]
    dX = np.empty_like(X)
    dW = np.zeros_like(W)
    loss = 0.0
    for i in range(0, N, block):
        X_B, y_B = X[i : i + block], y[i : i + block]
        rows = np.arange(X_B.shape[0])
        S = X_B @ W
        m = S.max(axis=1)
        S -= m[:, None]
        label_logits = S[rows, y_B]
        np.exp(S, out=S)
        sums = S.sum(axis=1)
        loss += float(np.sum(np.log(sums) - label_logits)) / N
        S *= (1.0 / (N * sums))[:, None]
        S[rows, y_B] -= 1.0 / N
        dX[i : i + block] = S @ W.T
        dW += X_B.T @ S
    return loss, {"X": dX, "W": dW}


def vectorized_per_row(X: np.ndarray, W: np.ndarray, y: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, dict]:
    """``vectorized.linear_cross_entropy`` with ``reduction="none"``: the (N,) losses and the backward at ``g``."""
    return vectorized.linear_cross_entropy(X, W, y, reduction="none", grad_output=g)


NUMPY = {
    "numpy dense": numpy_dense,
    "vectorized": vectorized.linear_cross_entropy,
    "vectorized none": vectorized_per_row,
    "numpy rows blocked": numpy_rows_blocked,
}


def shapes(config) -> list[tuple[int, int, int]]:
    if config.getoption("benchmark_disable") and not config.getoption("benchmark_enable"):
        return [LINEAR_CE_SMOKE]
    return LINEAR_CE[bench_size(config)]


def pytest_generate_tests(metafunc):  # the workloads depend on whether the run times anything
    if "lce_shape" in metafunc.fixturenames:
        sizes = shapes(metafunc.config)
        metafunc.parametrize("lce_shape", sizes, ids=["x".join(map(str, s)) for s in sizes])


def describe(benchmark, kind: str, shape: tuple[int, int, int], contender: str, memory: int) -> None:
    N, _, V = shape
    benchmark.group = f"linear_cross_entropy {'x'.join(map(str, shape))} float32"
    benchmark.extra_info.update(
        kind=kind,
        function="linear_cross_entropy",
        shape=list(shape),
        dtype="float32",
        contender=contender,
        scores_elements=N * V,
        variants=[],
        working_memory_bytes=int(memory),
        logits_bytes=N * V * 4,
        missing_peers={} if torch_module() else {"torch": TORCH_MISSING},
    )


@pytest.mark.parametrize("contender", NUMPY_CONTENDERS)
def test_numpy_time_and_memory(benchmark, lce_shape, contender):
    X, W, y = linear_ce_inputs(lce_shape)
    extra = (cotangent(X.shape[0], np.float32),) if contender == "vectorized none" else ()
    run = functools.partial(NUMPY[contender], X, W, y, *extra)
    describe(benchmark, "numpy lce", lce_shape, contender, working_memory(run))
    loss, grads = benchmark(run)
    assert np.isfinite(loss).all() and grads["W"].dtype == np.float32


@pytest.mark.parametrize("contender", JAX_CONTENDERS)
def test_jax_time_and_memory(benchmark, lce_shape, contender):
    X, W, y = (jnp.asarray(a) for a in linear_ce_inputs(lce_shape))
    zero, one = jnp.asarray(0.0, jnp.float32), jnp.asarray(1.0, jnp.float32)  # one: the default cotangent (eq. 54)
    if contender == "jax autodiff":
        fn = jax.jit(jax.value_and_grad(losses.linear_cross_entropy_value, argnums=(0, 1)))
    elif contender == "compiled core":
        fn = jax.jit(lambda X, W, y: compiled.linear_cross_entropy_core(X, W, y, None, None, zero, zero, None))
    else:  # what the public function compiles on device arrays: the core and the input checks in one program
        fn = jax.jit(
            lambda X, W, y: compiled._linear_cross_entropy_checked(
                X, W, y, None, None, True, (zero, zero, None), one, ignore_index=None, reduction="mean", chunk_size=None
            )
        )
    executable = fn.lower(X, W, y).compile()
    describe(benchmark, "jax lce", lce_shape, contender, executable.memory_analysis().temp_size_in_bytes)

    def run():
        if contender == "compiled (device)":  # timed through the public function, checks and all
            return jax.block_until_ready(compiled.linear_cross_entropy(X, W, y))
        return jax.block_until_ready(executable(X, W, y))

    run()
    leaves = jax.tree_util.tree_leaves(benchmark(run))
    assert all(leaf.dtype == jnp.float32 for leaf in leaves)


@pytest.mark.parametrize("contender", TORCH_CONTENDERS)
def test_torch_time_and_memory(benchmark, lce_shape, contender):
    if torch_module() is None:
        pytest.skip(TORCH_MISSING)
    chunked = contender == "torch chunked"
    X, W, y = linear_ce_inputs(lce_shape)
    run = torch_linear_cross_entropy(X, W, y, chunked)
    describe(benchmark, "torch lce", lce_shape, contender, torch_working_memory(lce_shape, chunked))
    loss, grads = benchmark(run)
    assert np.isfinite(loss) and grads["W"].shape == W.shape
