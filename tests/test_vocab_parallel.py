"""The NumPy vocabulary-parallel form (derivation section 10) against both oracles of the unsharded loss.

k in {1, 2, 3, 8} column blocks of V = 11 classes (so 2, 3 and 8 leave uneven
blocks), every loss option alone and together, both reductions, float64 and
float32; the oracles are JAX autodiff of the dense loss (``reference``) and
the per-row variant.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from manual import vocab_parallel
from softmax_grad.cases import Case, compare_results
from tests.conftest import ORACLES, VARIANTS

ROOT = Path(__file__).resolve().parent.parent
N, D, V = 6, 3, 11
RNG = np.random.default_rng(22)
X = RNG.standard_normal((N, D))
W = 1.5 * RNG.standard_normal((D, V))
BIAS = 0.5 * RNG.standard_normal(V)
Y = np.array([0, 10, 3, 5, 5, 8])  # labels in the first and the last block, two rows sharing one
Y_IGNORED = np.where(np.arange(N) % 3 == 1, -100, Y)
WEIGHT = RNG.uniform(0.2, 2.0, V)
ALL = {"weight": WEIGHT, "ignore_index": -100, "label_smoothing": 0.2, "z_loss": 0.05, "softcap": 1.5}
OPTIONS = {
    "plain": {},
    "sum": {"reduction": "sum"},
    "weight": {"weight": WEIGHT},
    "ignore_index": {"ignore_index": -100},
    "label_smoothing": {"label_smoothing": 0.3},
    "z_loss": {"z_loss": 0.1},
    "softcap": {"softcap": 1.2},
    "all": ALL,
    "all, sum": {**ALL, "reduction": "sum"},
}
ORACLE_MODULES = {"autodiff": ORACLES["autodiff"], "per_row": VARIANTS["per_row"]}
_EXPECTED: dict[tuple, object] = {}


def blocks_of(k: int) -> types.SimpleNamespace:
    """``vocab_parallel`` with ``devices=k`` bound, in the shape ``Case.call`` expects of a variant."""
    return types.SimpleNamespace(linear_cross_entropy=functools.partial(vocab_parallel.linear_cross_entropy, devices=k))


def case(options: str, dtype: type) -> Case:
    kwargs = dict(OPTIONS[options])
    y = Y_IGNORED if "ignore_index" in kwargs else Y
    return Case(options, "linear_cross_entropy", (X, W, y), {"bias": BIAS, **kwargs}).astype(dtype)


# Every option against per_row (itself held to autodiff by test_linear_cross_entropy.py); none, all of them,
# and all with "sum" against autodiff directly (each option set costs the oracle a compilation of its own).
SWEEP = [(options, "per_row") for options in OPTIONS]
SWEEP += [(options, "autodiff") for options in ("plain", "all", "all, sum")]


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("options, oracle", SWEEP, ids=[f"{o}-{oracle}" for o, oracle in SWEEP])
@pytest.mark.parametrize("k", [1, 2, 3, 8])
def test_the_blocks_give_the_unsharded_result(k, options, oracle, dtype):
    c = case(options, dtype)
    if (options, dtype, oracle) not in _EXPECTED:  # one oracle call for the four k
        _EXPECTED[options, dtype, oracle] = c.call(ORACLE_MODULES[oracle])
    expected = _EXPECTED[options, dtype, oracle]
    failures = [r.message for r in compare_results(c, c.call(blocks_of(k)), expected, "autodiff", f"k={k}") if not r.ok]
    assert not failures, "\n".join(failures)


def test_without_a_bias_the_gradients_are_x_and_w():
    loss, grads = vocab_parallel.linear_cross_entropy(X, W, Y, devices=3, **{**ALL, "ignore_index": None})
    expected_loss, expected = ORACLES["autodiff"].linear_cross_entropy(X, W, Y, **{**ALL, "ignore_index": None})
    assert set(grads) == {"X", "W"}
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-13)
    for key in grads:
        np.testing.assert_allclose(grads[key], expected[key], rtol=1e-12, atol=1e-15)


def test_the_blocks_cover_the_classes_unevenly():
    assert vocab_parallel.column_blocks(11, 3) == [(0, 4), (4, 8), (8, 11)]
    assert vocab_parallel.column_blocks(11, 8)[-1] == (10, 11)
    assert vocab_parallel.column_blocks(8, 8) == [(v, v + 1) for v in range(8)]


@pytest.mark.parametrize("devices", [0, -1, 12, 2.0, True])
def test_a_bad_device_count_is_refused(devices):
    with pytest.raises(ValueError, match="devices"):
        vocab_parallel.linear_cross_entropy(X, W, Y, devices=devices)


def test_the_inputs_are_left_unchanged():
    copies = [a.copy() for a in (X, W, BIAS, WEIGHT)]
    vocab_parallel.linear_cross_entropy(X, W, Y, bias=BIAS, weight=WEIGHT, devices=3, softcap=1.0)
    assert all(np.array_equal(a, b) for a, b in zip(copies, (X, W, BIAS, WEIGHT), strict=True))


def test_compiled_on_8_simulated_devices_gives_the_unsharded_result():
    """tests/sharded_vocab_parallel.py in a subprocess with 8 CPU devices: meshes, options, collectives, memory."""
    environment = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
    run = subprocess.run(
        [sys.executable, "-m", "tests.sharded_vocab_parallel"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert "FAIL" not in run.stdout and run.stdout.count("\nok ") >= 140, run.stdout[-4000:]
    assert "checks passed" in run.stdout, run.stdout[-4000:]
