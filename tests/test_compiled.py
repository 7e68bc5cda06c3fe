"""The compiled variant's two ways of finding the row max and sum, both checked on the CPU.

The public functions (tested with every variant) take the two-pass form on the
CPU; accelerators take the one-pass ("online") form. So that CI, which has no
GPU, still checks what a GPU runs, the one-pass form is compared here with the
autodiff oracle on every standard ``softmax_loss`` case.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from manual.compiled import softmax_loss_core
from softmax_grad.cases import compare_results, standard_cases

CASES = [case for case in standard_cases() if case.function == "softmax_loss"]


@pytest.mark.parametrize("one_pass", [True, False], ids=["one pass", "two passes"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_both_row_reductions_agree_with_autodiff(case, dtype, one_pass, oracle_result):
    case = case.astype(dtype)
    S, y = case.args
    with jax.enable_x64(dtype == np.float64):
        loss, dS = softmax_loss_core(jnp.asarray(S), jnp.asarray(y), case.kwargs["reduction"], one_pass=one_pass)
        actual = (float(loss), np.asarray(dS))
    comparisons = compare_results(case, actual, oracle_result(case, "autodiff"), "autodiff", f"one_pass={one_pass}")
    failures = [c.message for c in comparisons if not c.ok]
    assert not failures, "\n".join(failures)


def test_the_cpu_default_is_two_passes():
    assert jax.default_backend() == "cpu"
    S = jnp.asarray(np.random.default_rng(0).standard_normal((4, 5)), jnp.float32)
    y = jnp.asarray([0, 1, 2, 3])
    default = softmax_loss_core(S, y)
    two_pass = softmax_loss_core(S, y, one_pass=False)
    assert np.array_equal(np.asarray(default[1]), np.asarray(two_pass[1]))
