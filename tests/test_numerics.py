"""The suite's own numerics at the edges (issue 15): each test pins a defect an adversarial review found.

- float32 gradients whose entries are small because of 1/N: a 0.1% error must not
  hide under an absolute tolerance floor, and every variant must be that accurate;
- float32 losses summed over 100000 rows: accumulated in a wider type;
- the literal formula (``stable=False``) at N > 1 and at every reduction;
- no public function changes JAX's global configuration;
- finite inputs whose products overflow, long-double inputs beyond float64, and
  scores at the top of the float64 range: a clear error or the right value.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from softmax_grad.cases import FUNCTIONS, Case, compare_results, params, standard_cases
from tests.conftest import ORACLES, VARIANTS

IMPLEMENTATIONS = {**VARIANTS, **{f"reference.{name}": module for name, module in ORACLES.items()}}


def failures(case: Case, actual, expected, oracle: str = "autodiff") -> list[str]:
    return [c.message for c in compare_results(case, actual, expected, oracle, case.id) if not c.ok]


# ------------------------------------------------------------- 1/N-small entries
def tiled_float32_case(top: float = 87.0, N: int = 100_000) -> Case:
    """Rows [top, top - 0.5] tiled N times: every gradient entry is ~1/N.

    At 87 (just below float32's exp overflow) exp(S) has row sums past 1 / smallest normal; at 86 they
    are below it but past 1 / (N smallest normal), where the factor 1 / (N sums) is deep in the subnormals.
    """
    S = np.tile(np.array([[top, top - 0.5]], np.float32), (N, 1))
    return Case(f"[{top:g}, {top - 0.5:g}] x {N}", "softmax_loss", (S, np.zeros(N, np.intp)))


@pytest.fixture(scope="module", params=[87.0, 86.0], ids=["87", "86"])
def tiled_expected(request):
    case = tiled_float32_case(request.param)
    return case, case.call(ORACLES["autodiff"])


@pytest.mark.parametrize("factor", [1.001, 0.999])
def test_a_tenth_of_a_percent_in_one_over_n_entries_is_caught(tiled_expected, factor):
    case, (loss, dS) = tiled_expected
    assert np.abs(dS).max() < 1e-5  # the entries really are small: the old float32 floor was 1e-7
    assert failures(case, (loss, (dS * factor).astype(np.float32)), (loss, dS))
    assert not failures(case, (loss, dS), (loss, dS))


@pytest.mark.parametrize("variant", VARIANTS)
def test_float32_gradients_and_losses_stay_accurate_at_large_n(variant, tiled_expected):
    # Caught in 0.1: vectorized's shift-free path lost gradient digits (2.4e-3 relative)
    # and per_row summed the float32 loss in float32 (4.6e-4 relative).
    case, expected = tiled_expected
    actual = case.call(VARIANTS[variant])
    assert not failures(case, actual, expected), variant
    loss, dS = actual
    assert abs(loss - expected[0]) <= 1e-6 * expected[0], (loss, expected[0])
    assert np.max(np.abs(dS - expected[1])) <= 1e-5 * np.max(np.abs(expected[1]))


# ------------------------------------------------------------- the literal formula
def literal_cases() -> list[Case]:
    """Moderate and large scores where the unshifted formula is still exact, N > 1, both reductions."""
    rng = np.random.default_rng(5)
    cases = []
    for name, S in [
        ("moderate 7x5", 3 * rng.standard_normal((7, 5))),
        ("near 700, 6x3", 700 + rng.standard_normal((6, 3))),
    ]:
        y = rng.integers(0, S.shape[1], S.shape[0])
        for reduction in ("mean", "sum"):
            cases.append(Case(name, "softmax_loss", (S, y), {"reduction": reduction, "stable": False}))
    return cases


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("case", literal_cases(), ids=lambda c: c.id)
def test_the_literal_formula_agrees_with_both_oracles_at_every_reduction(variant, case):
    reduction = case.kwargs["reduction"]
    for oracle in ORACLES:
        expected = ORACLES[oracle].softmax_loss(*case.args, reduction=reduction)
        assert not failures(case, case.call(VARIANTS[variant]), expected, oracle), (variant, oracle)


@pytest.mark.parametrize("wrong", ["loss / N", "loss * N", "gradient / N"])
def test_a_literal_formula_off_by_n_is_caught(wrong):
    case = literal_cases()[0]  # mean, N = 7
    N = case.args[0].shape[0]
    loss, dS = case.call(VARIANTS["vectorized"])
    mutated = {"loss / N": (loss / N, dS), "loss * N": (loss * N, dS), "gradient / N": (loss, dS / N)}[wrong]
    assert failures(case, mutated, ORACLES["autodiff"].softmax_loss(*case.args))


# ------------------------------------------------------------- JAX's global configuration
def jax_state() -> tuple:
    return (jax.config.read("jax_enable_x64"), jnp.zeros(1).dtype, jnp.asarray(1.0).dtype)


def one_case_per_function() -> list[Case]:
    chosen: dict[str, Case] = {}
    for case in standard_cases():
        chosen.setdefault(case.function, case)
    return [chosen[name] for name in FUNCTIONS]


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_no_public_function_changes_jax_global_configuration(implementation, dtype):
    before = jax_state()
    for case in one_case_per_function():
        case.astype(dtype).call(IMPLEMENTATIONS[implementation])
        assert jax_state() == before, f"{implementation}.{case.function} changed JAX's configuration"


def test_the_configuration_check_sees_a_global_switch():
    # The control: a function that turns 64-bit mode on for good is what the test above must catch.
    before = jax_state()
    try:
        jax.config.update("jax_enable_x64", not before[0])
        assert jax_state() != before
    finally:
        jax.config.update("jax_enable_x64", before[0])
    assert jax_state() == before


# ------------------------------------------------------------- the edges of the float range
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_products_that_overflow_are_an_error_not_a_nan(implementation):
    module = IMPLEMENTATIONS[implementation]
    X, W = np.full((2, 3), 1e200), np.full((3, 4), 1e200)
    with pytest.raises(ValueError, match=r"finite but the scores X @ W overflows"):
        module.linear_loss(W, X, [0, 1])
    huge = params(3, 2, 4, seed=0) | {"W1": np.full((3, 2), 1e200), "W2": np.full((2, 4), 1e200)}
    with pytest.raises(ValueError, match=r"finite but the forward pass .* overflows"):
        module.two_layer_loss(huge, np.ones((2, 3)), [0, 1])


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_long_double_scores_beyond_float64_are_an_error(implementation):
    if np.finfo(np.longdouble).max <= np.finfo(np.float64).max:
        pytest.skip("this platform's long double is float64: nothing lies beyond its range")
    S = np.array([[0.0, 1.0], [2.0, 3.0]], dtype=np.longdouble)
    S[1, 0] = np.longdouble(10) ** 400
    with pytest.raises(ValueError, match=r"scores holds 1e\+400 at index \(1, 0\), beyond float64's range"):
        IMPLEMENTATIONS[implementation].softmax_loss(S, [0, 1])
    within = np.array([[0.0, 1.0]], dtype=np.longdouble)  # in range: accepted, computed in float64
    loss, dS = IMPLEMENTATIONS[implementation].softmax_loss(within, [1])
    assert dS.dtype == np.float64 and np.isclose(loss, np.log1p(np.exp(-1.0)))


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_scores_at_the_top_of_the_float64_range_give_log_c(implementation):
    # 0.1's finite-difference oracle returned 0 here: log 4 + 1.7e308 - 1.7e308 rounds the log away.
    loss, _ = IMPLEMENTATIONS[implementation].softmax_loss(np.full((3, 4), 1.7e308), [0, 1, 2])
    assert loss == pytest.approx(np.log(4), rel=1e-15)
