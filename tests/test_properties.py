"""Property-based tests: hypothesis draws shapes, scales, dtypes and values; every variant must hold.

Arrays come from a seed that hypothesis draws, with values bounded from the
start (standard normal times a scale between 1e-3 and 1e3), so no example
overflows by construction. The default profile runs a few examples per
property; ``SOFTMAX_GRAD_PROFILE=thorough`` runs thousands (see conftest.py).
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import reference
from reference import finite_differences as fd
from softmax_grad.cases import Case, compare_results
from softmax_grad.compare import compare
from softmax_grad.tolerances import tolerance
from tests.conftest import VARIANTS

FULL_FD_LIMIT = 120  # entries; past this, finite differences along one random direction
# Each drawn shape costs JAX compilations (the compiled variant and the oracle), which dominate these tests'
# time. The properties whose functions every variant is also held to on the standard cases (test_agreement,
# both oracles, both dtypes) run a third of the profile's examples: 5 by default, hundreds when thorough.
# softmax_loss's agreement with both oracles keeps the full count.
FEWER = settings(max_examples=max(3, settings.default.max_examples // 3))

seeds = st.integers(0, 2**32 - 1)
dtypes = st.sampled_from([np.float64, np.float32])
score_scales = st.sampled_from([1e-3, 1e-1, 1.0, 10.0, 1e3])


@st.composite
def score_problems(draw, max_n=64, max_c=50):
    N, C = draw(st.integers(1, max_n)), draw(st.integers(1, max_c))
    rng = np.random.default_rng(draw(seeds))
    S = (draw(score_scales) * rng.standard_normal((N, C))).astype(draw(dtypes))
    return S, rng.integers(0, C, N), draw(st.sampled_from(["mean", "sum"]))


@st.composite
def linear_problems(draw):
    N, D, C = draw(st.integers(1, 32)), draw(st.integers(1, 8)), draw(st.integers(1, 10))
    rng = np.random.default_rng(draw(seeds))
    dtype = draw(dtypes)
    W = (rng.standard_normal((D, C)) / np.sqrt(D)).astype(dtype)
    X = rng.standard_normal((N, D)).astype(dtype)
    reg = draw(st.sampled_from([0.0, 1e-3, 0.5]))
    return W, X, rng.integers(0, C, N), reg, draw(st.sampled_from(["mean", "sum"]))


@st.composite
def two_layer_problems(draw):
    N, D, H, C = (draw(st.integers(1, n)) for n in (24, 6, 8, 6))
    rng = np.random.default_rng(draw(seeds))
    dtype = draw(dtypes)
    params = {
        "W1": rng.standard_normal((D, H)) / np.sqrt(D),
        "b1": 0.1 * rng.standard_normal(H),
        "W2": rng.standard_normal((H, C)) / np.sqrt(H),
        "b2": 0.1 * rng.standard_normal(C),
    }
    X = rng.standard_normal((N, D))
    if draw(st.booleans()):  # rows of zero input against zero biases: pre-activations exactly 0
        X[rng.random(N) < 0.3] = 0.0
        params["b1"][:] = 0.0
    params = {key: value.astype(dtype) for key, value in params.items()}
    return params, X.astype(dtype), rng.integers(0, C, N), draw(st.sampled_from([0.0, 0.1]))


def assert_agrees(case: Case, actual, expected, oracle: str) -> None:
    failures = [c.message for c in compare_results(case, actual, expected, oracle, case.id) if not c.ok]
    assert not failures, "\n".join(failures)


def assert_gradient_matches_fd(loss_of, x: np.ndarray, gradient: np.ndarray, rng) -> None:
    """``gradient`` of ``loss_of`` at ``x``: every entry if small, else along a random direction."""
    tol = tolerance(np.float64, "finite_differences")
    if x.size <= FULL_FD_LIMIT:
        assert compare(gradient, fd.central_difference(loss_of, x), tol, label="gradient vs FD").ok
    else:
        v = rng.standard_normal(x.shape)
        slope = fd.directional_derivative(loss_of, x, v)
        predicted = float(np.sum(gradient * v))
        assert (
            abs(predicted - slope) <= tol.rtol * abs(slope) + tol.atol * float(np.sum(np.abs(gradient * v))) + tol.floor
        )


# ------------------------------------------------------------ agreement
@given(score_problems())
def test_softmax_loss_agrees_with_autodiff(problem):
    S, y, reduction = problem
    case = Case("drawn", "softmax_loss", (S, y), {"reduction": reduction})
    expected = case.call(reference)
    for name, module in VARIANTS.items():
        assert_agrees(case, case.call(module), expected, "autodiff")
        if name == "per_element" and S.size > 400:
            break  # the loop variant is checked on the smaller draws; it is slow, not different


@given(score_problems(), seeds)
def test_softmax_loss_agrees_with_finite_differences_in_float64(problem, seed):
    S, y, reduction = problem
    S = S.astype(np.float64)
    for module in VARIANTS.values():
        _, dS = module.softmax_loss(S, y, reduction=reduction)
        rng = np.random.default_rng(seed)
        assert_gradient_matches_fd(lambda s: fd.softmax_loss_value(s, y, reduction), S, dS, rng)


@FEWER
@given(linear_problems(), seeds)
def test_linear_loss_agrees_with_both_oracles(problem, seed):
    W, X, y, reg, reduction = problem
    case = Case("drawn", "linear_loss", (W, X, y), {"reg": reg, "reduction": reduction})
    expected = case.call(reference)
    W64, X64 = W.astype(np.float64), X.astype(np.float64)
    for module in VARIANTS.values():
        assert_agrees(case, case.call(module), expected, "autodiff")
        _, dW = module.linear_loss(W64, X64, y, reg=reg, reduction=reduction)
        rng = np.random.default_rng(seed)
        assert_gradient_matches_fd(lambda w: fd.linear_loss_value(w, X64, y, reg, reduction), W64, dW, rng)


@FEWER
@given(two_layer_problems(), seeds)
def test_two_layer_loss_agrees_with_both_oracles(problem, seed):
    params, X, y, reg = problem
    case = Case("drawn", "two_layer_loss", (params, X, y), {"reg": reg})
    expected = case.call(reference)
    params64 = {key: value.astype(np.float64) for key, value in params.items()}
    X64 = X.astype(np.float64)
    gate = (X64 @ params64["W1"] + params64["b1"] > 0).astype(np.float64)  # see finite_differences
    for module in VARIANTS.values():
        assert_agrees(case, case.call(module), expected, "autodiff")
        _, grads = module.two_layer_loss(params64, X64, y, reg=reg)
        for key in params64:
            rng = np.random.default_rng(seed)

            def loss_of(value, key=key):
                return fd.two_layer_loss_value({**params64, key: value}, X64, y, reg, gate)

            assert_gradient_matches_fd(loss_of, params64[key], grads[key], rng)


@FEWER
@given(st.integers(1, 40), seeds, score_scales, dtypes)
def test_softmax_and_jacobian_agree_with_autodiff(C, seed, scale, dtype):
    x = (scale * np.random.default_rng(seed).standard_normal(C)).astype(dtype)
    for function, args in (("softmax_jacobian", (x,)), ("softmax", (x[None, :],))):
        case = Case("drawn", function, args)
        expected = case.call(reference)
        for module in VARIANTS.values():
            assert_agrees(case, case.call(module), expected, "autodiff")


# ------------------------------------------------------------ structure
@FEWER
@given(score_problems())
def test_gradient_rows_sum_to_zero_and_entries_lie_within_one_over_n(problem):
    S, y, reduction = problem
    N = S.shape[0]
    bound = 1.0 / N if reduction == "mean" else 1.0
    eps = float(np.finfo(S.dtype).eps)
    for module in VARIANTS.values():
        _, dS = module.softmax_loss(S, y, reduction=reduction)
        # sum_j dS[i, j] = scale * (sum_j P[i, j] - 1) = 0, up to C roundings of size scale * eps
        assert np.all(np.abs(dS.sum(axis=1, dtype=np.float64)) <= 4 * S.shape[1] * eps * bound)
        assert np.all(np.abs(dS) <= bound * (1 + 4 * eps))


@given(score_problems(), seeds)
def test_adding_a_constant_to_a_row_changes_nothing(problem, seed):
    # Eq. (14): softmax(s - c) = softmax(s). This is also why the max shift is free.
    S, y, reduction = problem
    S = S.astype(np.float64)
    shifts = np.round(np.random.default_rng(seed).uniform(-100, 100, (S.shape[0], 1)))
    tol = tolerance(np.float64, "autodiff")
    for name, module in VARIANTS.items():
        loss, dS = module.softmax_loss(S, y, reduction=reduction)
        shifted_loss, shifted_dS = module.softmax_loss(S + shifts, y, reduction=reduction)
        # The shifted scores are rounded, so compare at the rounding they carry.
        slack = float(np.finfo(np.float64).eps * np.max(np.abs(S + shifts))) * S.shape[0]
        assert abs(loss - shifted_loss) <= tol.rtol * abs(loss) + slack * 10, name
        assert np.all(np.abs(dS - shifted_dS) <= tol.rtol * np.abs(dS) + slack * 10 + tol.floor), name


@FEWER
@given(score_problems())
def test_loss_is_nonnegative_and_log_c_at_ties(problem):
    S, y, reduction = problem
    C = S.shape[1]
    for module in VARIANTS.values():
        loss, _ = module.softmax_loss(S, y, reduction=reduction)
        assert loss >= 0
        tied, _ = module.softmax_loss(np.full_like(S, S[0, 0]), y, reduction="mean")
        assert np.isclose(tied, np.log(C), rtol=10 * np.finfo(S.dtype).eps, atol=10 * np.finfo(S.dtype).eps)


@given(st.integers(1, 40), seeds, score_scales)
def test_jacobian_is_symmetric_psd_with_rows_summing_to_zero(C, seed, scale):
    x = scale * np.random.default_rng(seed).standard_normal(C)
    eps = np.finfo(np.float64).eps
    for name, module in VARIANTS.items():
        J = module.softmax_jacobian(x)
        assert np.array_equal(J, J.T) or np.max(np.abs(J - J.T)) <= 4 * eps, name
        assert np.all(np.abs(J.sum(axis=1)) <= 4 * C * eps), name
        assert np.linalg.eigvalsh(J).min() >= -8 * C * eps, name


@FEWER
@given(two_layer_problems())
def test_two_layer_gradients_obey_the_chain_rule_through_softmax_loss(problem):
    # Eqs. (8)-(9) across functions: dW2 = H1^T dS + reg W2 and db2 = 1^T dS,
    # with dS from the same variant's softmax_loss of the same scores.
    params, X, y, reg = problem
    params = {key: value.astype(np.float64) for key, value in params.items()}
    X = X.astype(np.float64)
    H1 = np.maximum(X @ params["W1"] + params["b1"], 0)
    S = H1 @ params["W2"] + params["b2"]
    tol = tolerance(np.float64, "autodiff")
    for name, module in VARIANTS.items():
        _, dS = module.softmax_loss(S, y)
        _, grads = module.two_layer_loss(params, X, y, reg=reg)
        assert compare(grads["W2"], H1.T @ dS + reg * params["W2"], tol, label=f"{name} dW2").ok
        assert compare(grads["b2"], dS.sum(axis=0), tol, label=f"{name} db2").ok
