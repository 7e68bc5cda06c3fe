"""The benchmark workloads: shapes, inputs, and which contenders can afford them.

One table per workload (function, shape, dtype); every variant of
``manual.VARIANTS`` is a contender in it, plus the floor: one ``np.exp`` pass
over the same (N, C) scores, which no NumPy implementation can beat.

``softmax_loss with options`` is ``softmax_loss`` with every loss option on at
once (``LOSS_OPTIONS``: class weights, ignore_index on a tenth of the rows,
label smoothing, z-loss, soft-capping), beside the same shapes without them.
``softmax_loss none`` is ``softmax_loss`` with ``reduction="none"`` and a
random cotangent (derivation eqs. 54-55), on the same shapes as the
"mean" rows it is read against: what the per-row backward costs.
"""

from __future__ import annotations

import tracemalloc

import numpy as np

WITH_OPTIONS = "softmax_loss with options"
PER_ROW = "softmax_loss none"  # reduction="none", the backward at a random (N,) cotangent
SOFTMAX_WORKLOADS = ("softmax_loss", WITH_OPTIONS, PER_ROW)

# (N, C) for softmax_loss (with options or not); (N, D, C) for linear_loss; (N, D, H, C) for two_layer_loss.
FULL = {
    "softmax_loss": [(64, 10), (100, 100), (256, 10), (128, 1000), (4096, 1000), (1024, 32000)],
    WITH_OPTIONS: [(100, 100), (4096, 1000)],
    PER_ROW: [(100, 100), (4096, 1000)],
    "linear_loss": [(128, 100, 10), (500, 3073, 10)],  # the second: a CIFAR-10 batch, bias folded into X
    "two_layer_loss": [(64, 32, 64, 10), (256, 3072, 100, 10)],  # the second: a CIFAR-10 batch
}
QUICK = {
    "softmax_loss": [(64, 10), (100, 100), (128, 1000), (4096, 1000)],
    WITH_OPTIONS: [(100, 100), (4096, 1000)],
    PER_ROW: [(100, 100), (4096, 1000)],
    "linear_loss": [(128, 100, 10)],
    "two_layer_loss": [(64, 32, 64, 10)],
}
SIZES = {"full": FULL, "quick": QUICK}

# A loop variant runs only where one call is expected to take under this long.
LOOP_BUDGET_SECONDS = 2.0
# Measured on the 2-core development machine: one innermost iteration of the
# per-element loops (index, multiply, add on NumPy scalars) costs about 0.3-1 us.
PER_ELEMENT_SECONDS_PER_ITERATION = 1e-6


def public_name(function: str) -> str:
    """The public function a workload calls: ``softmax_loss`` for the options and per-row workloads too."""
    return "softmax_loss" if function in SOFTMAX_WORKLOADS else function


def loss_options(C: int, dtype: type, rng: np.random.Generator) -> dict:
    """Every loss option on (README, "Loss options"), as ``softmax_loss`` keywords."""
    return {
        "weight": (0.5 + rng.random(C)).astype(dtype),
        "ignore_index": -100,
        "label_smoothing": 0.1,
        "z_loss": 1e-4,
        "softcap": 30.0,
    }


def cotangent(n: int, dtype: type, seed: int = 1) -> np.ndarray:
    """A random (N,) cotangent as a training step's per-token weights give one: mixed signs, a tenth zeros."""
    rng = np.random.default_rng(seed)
    g = rng.standard_normal(n)
    g[rng.random(n) < 0.1] = 0.0
    return g.astype(dtype)


def scores_shape(function: str, shape: tuple[int, ...]) -> tuple[int, int]:
    """The (N, C) of the scores that ``function`` computes for ``shape``."""
    return (shape[0], shape[-1])


def loop_iterations(function: str, shape: tuple[int, ...]) -> int:
    """How many innermost Python iterations the per-element variant runs for one call."""
    if function in SOFTMAX_WORKLOADS:  # the options and the cotangent add work per entry, not loop levels
        N, C = shape
        return N * C
    if function == "linear_loss":
        N, D, C = shape
        return N * C + D * C * N
    N, D, H, C = shape
    return N * C + H * C * N + N * H * C + D * H * N  # dS, dW2, dH1, dW1


def skip_reason(variant: str, function: str, shape: tuple[int, ...]) -> str | None:
    """Why ``variant`` sits this workload out, or None if it runs."""
    if variant != "per_element":
        return None
    iterations = loop_iterations(function, shape)
    seconds = iterations * PER_ELEMENT_SECONDS_PER_ITERATION
    if seconds <= LOOP_BUDGET_SECONDS:
        return None
    return (
        f"per_element would run {iterations:.2e} Python iterations at {shape} "
        f"(about {seconds:.0f} s a call, over the {LOOP_BUDGET_SECONDS:.0f} s budget)"
    )


def inputs(function: str, shape: tuple[int, ...], dtype: type, seed: int = 0) -> tuple[tuple, dict]:
    """Random arguments for ``function`` at ``shape`` in ``dtype``: ``(args, kwargs)``."""
    rng = np.random.default_rng(seed)
    N, C = scores_shape(function, shape)
    y = rng.integers(0, C, N)
    if function == "softmax_loss":
        return (rng.standard_normal(shape).astype(dtype), y), {}
    if function == WITH_OPTIONS:
        y[rng.random(N) < 0.1] = -100  # padding rows
        return (rng.standard_normal(shape).astype(dtype), y), loss_options(C, dtype, rng)
    if function == PER_ROW:
        return (rng.standard_normal(shape).astype(dtype), y), {"reduction": "none", "grad_output": cotangent(N, dtype)}
    if function == "linear_loss":
        _, D, _ = shape
        W = (0.01 * rng.standard_normal((D, C))).astype(dtype)
        return (W, rng.standard_normal((N, D)).astype(dtype), y), {"reg": 1e-3}
    _, D, H, _ = shape
    params = {
        "W1": (rng.standard_normal((D, H)) / np.sqrt(D)).astype(dtype),
        "b1": np.zeros(H, dtype),
        "W2": (rng.standard_normal((H, C)) / np.sqrt(H)).astype(dtype),
        "b2": np.zeros(C, dtype),
    }
    return (params, rng.standard_normal((N, D)).astype(dtype), y), {"reg": 1e-3}


# Linear cross-entropy (derivation section 8), (N, D, V) in float32: a language model's last layer.
# Plain pytest smoke-runs each contender once at LINEAR_CE_SMOKE; timing runs use the sizes below.
LINEAR_CE = {"full": [(2048, 512, 32768), (2048, 512, 131072)], "quick": [(1024, 256, 8192)]}
LINEAR_CE_SMOKE = (64, 16, 1000)


def linear_ce_inputs(shape: tuple[int, int, int], dtype: type = np.float32, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Hidden states X (N, D) of unit variance, a classifier W (D, V) scaled by 1/sqrt(D), labels y (N,)."""
    N, D, V = shape
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, D), dtype=np.float32).astype(dtype)
    W = (rng.standard_normal((D, V), dtype=np.float32) / np.sqrt(D)).astype(dtype)
    return X, W, rng.integers(0, V, N)


def working_memory(call) -> int:
    """Peak bytes NumPy allocated during ``call()`` (tracemalloc), less the gradients it returns."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        _, grads = call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - sum(g.nbytes for g in grads.values())
