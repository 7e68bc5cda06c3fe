"""The loss options (derivation section 7, eqs. 17-24) in every variant, against both oracles.

Every option group of ``softmax_grad.cases.option_cases`` (each option alone,
in combination, at N = 1, C = 1, C = 2 and at logits near 1000), both
reductions, float64 and float32, every variant, each oracle. Then the
conventions that a comparison between two implementations could share by
mistake are pinned by closed forms: every row ignored, the soft-target
gradient ``(sum_j t_ij) p_i - t_i``, the weighted mean's denominator.
"""

from __future__ import annotations

import numpy as np
import pytest

import reference
from softmax_grad.cases import OPTION_GROUPS, compare_results, option_cases
from softmax_grad.compare import compare
from softmax_grad.tolerances import tolerance
from tests.conftest import DTYPES, ORACLES, VARIANTS

CASES = option_cases()
IMPLEMENTATIONS = {**VARIANTS, **{f"reference.{name}": module for name, module in ORACLES.items()}}
TOL = tolerance(np.float64, "autodiff")


def tol_for(implementation: str):
    """Finite differences are exact only to their own row of the table; every other implementation to autodiff's."""
    return tolerance(np.float64, "finite_differences" if implementation.endswith("finite_differences") else "autodiff")


def failures_against(module, oracle, dtype, oracle_result, cases=CASES) -> list[str]:
    found = []
    for base in cases:
        case = base.astype(dtype)
        actual = case.call(module)
        for comparison in compare_results(case, actual, oracle_result(case, oracle), oracle, case.id):
            if not comparison.ok:
                found.append(comparison.message)
    return found


def test_every_option_group_has_both_reductions():
    assert len(CASES) == 2 * len(OPTION_GROUPS) and len(set(OPTION_GROUPS)) == len(OPTION_GROUPS)
    kinds = {key for case in CASES for key, value in case.kwargs.items() if value is not None}
    assert kinds >= {"reduction", "weight", "ignore_index", "label_smoothing", "z_loss", "softcap"}


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("oracle", ORACLES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_agrees_with_each_oracle_on_every_option_group(variant, oracle, dtype, oracle_result):
    failures = failures_against(VARIANTS[variant], oracle, dtype, oracle_result)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
def test_the_two_oracles_agree_with_each_other_on_every_option_group(dtype, oracle_result):
    # Autodiff of the plainly written loss against differences of a NumPy loss written separately.
    for base in CASES:
        case = base.astype(dtype)
        fd = oracle_result(case, "finite_differences")
        for comparison in compare_results(case, fd, oracle_result(case, "autodiff"), "finite_differences", case.id):
            assert comparison.ok, comparison.message


# ------------------------------------------------------------- closed forms
S = 2 * np.random.default_rng(12).standard_normal((5, 4))
Y = np.array([0, 3, 1, 1, 2])


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_every_row_ignored_gives_nan_mean_zero_sum_and_a_zero_gradient(implementation):
    module = IMPLEMENTATIONS[implementation]
    for ignore_index in (-100, 2):
        y = np.full(5, ignore_index)
        for kwargs in ({}, {"label_smoothing": 0.3, "weight": np.arange(1.0, 5.0), "z_loss": 0.1, "softcap": 2.0}):
            loss, dS = module.softmax_loss(S, y, ignore_index=ignore_index, **kwargs)
            assert np.isnan(loss) and np.array_equal(dS, np.zeros_like(S)), (ignore_index, kwargs)
            loss, dS = module.softmax_loss(S, y, reduction="sum", ignore_index=ignore_index, **kwargs)
            assert loss == 0.0 and np.array_equal(dS, np.zeros_like(S)), (ignore_index, kwargs)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_ignored_rows_get_zero_gradient_and_leave_the_mean(implementation):
    # The kept rows' mean is the mean over the kept rows alone: ignoring rows 1 and 3 is deleting them.
    module = IMPLEMENTATIONS[implementation]
    y = Y.copy()
    y[[1, 3]] = -100
    kept = [0, 2, 4]
    loss, dS = module.softmax_loss(S, y, ignore_index=-100, z_loss=0.1)
    kept_loss, kept_dS = reference.softmax_loss(S[kept], Y[kept], z_loss=0.1)
    tol = tol_for(implementation)
    assert compare(loss, kept_loss, tol, label="loss").ok
    assert compare(dS[kept], kept_dS, tol, label="dS", gradient=True).ok
    if implementation.endswith("finite_differences"):
        assert compare(dS[[1, 3]], np.zeros((2, 4)), tol, label="ignored rows", gradient=True).ok
    else:
        assert np.array_equal(dS[[1, 3]], np.zeros((2, 4)))


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_soft_target_gradient_is_row_sum_times_p_minus_t(implementation):
    # dS_i = (sum_j t_ij) p_i - t_i ("sum"); p - t only where the row sums to 1.
    module = IMPLEMENTATIONS[implementation]
    T = np.random.default_rng(5).random((5, 4))
    T[0] /= T[0].sum()  # sums to 1
    T[1] = 0.0  # a padding row: zero loss, zero gradient
    P = reference.softmax(S)
    expected = T.sum(axis=1, keepdims=True) * P - T
    _, dS = module.softmax_loss(S, T, reduction="sum")
    tol = tol_for(implementation)
    assert compare(dS, expected, tol, label="dS", gradient=True).ok
    assert compare(dS[1], np.zeros(4), tol, label="padding row", gradient=True).ok
    assert compare(dS[0], P[0] - T[0], tol, label="dS[0]", gradient=True).ok
    assert not compare(dS[2:], P[2:] - T[2:], tol, label="p - t", gradient=True).ok
    _, dS_mean = module.softmax_loss(S, T)
    assert compare(dS_mean, expected / 5, tol, label="dS mean", gradient=True).ok  # soft targets divide by N


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_weighted_mean_is_invariant_to_scaling_the_weights(implementation):
    # Eq. (20) divides by sum_kept w[y_i]: multiplying every weight by 7 changes nothing.
    module = IMPLEMENTATIONS[implementation]
    w = np.array([0.5, 2.0, 1.0, 3.0])
    y = Y.copy()
    y[2] = -100
    options = {"ignore_index": -100, "label_smoothing": 0.2}
    loss, dS = module.softmax_loss(S, y, weight=w, **options)
    loss7, dS7 = module.softmax_loss(S, y, weight=7 * w, **options)
    tol = tol_for(implementation)
    assert compare(loss7, loss, tol, label="loss").ok and compare(dS7, dS, tol, label="dS", gradient=True).ok
    total, dS_sum = module.softmax_loss(S, y, reduction="sum", weight=w, **options)
    denominator = w[Y[[0, 1, 3, 4]]].sum()
    assert compare(loss, total / denominator, tol, label="mean = sum / D_n").ok
    assert compare(dS, dS_sum / denominator, tol, label="dS mean", gradient=True).ok


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_full_smoothing_ignores_the_labels(implementation):
    # e = 1: q_i = w / C for every row whatever its label (eq. 18).
    module = IMPLEMENTATIONS[implementation]
    w = np.array([0.5, 2.0, 1.0, 3.0])
    a = module.softmax_loss(S, Y, weight=w, label_smoothing=1.0, reduction="sum")
    b = module.softmax_loss(S, (Y + 1) % 4, weight=w, label_smoothing=1.0, reduction="sum")
    tol = tol_for(implementation)
    assert compare(a[0], b[0], tol, label="loss").ok and compare(a[1], b[1], tol, label="dS", gradient=True).ok


@pytest.mark.parametrize("variant", VARIANTS)
def test_options_at_their_defaults_are_the_textbook_loss(variant):
    # Every option passed explicitly at its default gives exactly the textbook result.
    module = VARIANTS[variant]
    for reduction in ("mean", "sum"):
        plain = module.softmax_loss(S, Y, reduction=reduction)
        spelled = module.softmax_loss(
            S, Y, reduction=reduction, weight=None, ignore_index=None, label_smoothing=0.0, z_loss=0.0, softcap=None
        )
        assert plain[0] == spelled[0] and np.array_equal(plain[1], spelled[1])
        # Unit weights and a never-used ignore_index take the options path and agree to rounding.
        ones = module.softmax_loss(S, Y, reduction=reduction, weight=np.ones(4), ignore_index=-100)
        assert compare(ones[0], plain[0], TOL, label="loss").ok
        assert compare(ones[1], plain[1], TOL, label="dS", gradient=True).ok


@pytest.mark.parametrize("variant", VARIANTS)
def test_float32_options_stay_float32(variant):
    module = VARIANTS[variant]
    S32 = S.astype(np.float32)
    for y, kwargs in [
        (Y, {"weight": np.ones(4), "label_smoothing": 0.1, "z_loss": 0.1, "softcap": 3.0}),  # float64 weight
        (np.random.default_rng(6).random((5, 4)), {"z_loss": 0.1}),  # float64 soft targets
    ]:
        loss, dS = module.softmax_loss(S32, y, **kwargs)
        assert dS.dtype == np.float32 and type(loss) is float


# ------------------------------------------------------------- softmax-grad verify
def test_verify_runs_a_row_per_option_group():
    from softmax_grad.verify import default_cases

    assert {case.group for case in default_cases()} == {"", *OPTION_GROUPS}


def test_verify_yields_each_block_before_it_computes_the_next():
    from manual import vectorized
    from softmax_grad.verify import iter_verify

    called = []

    class Recording:
        @staticmethod
        def softmax_loss(*args, **kwargs):
            called.append(kwargs)
            return vectorized.softmax_loss(*args, **kwargs)

    two_groups = [case for case in CASES if case.group in ("weight", "z_loss")]
    rows = iter_verify({"recording": Recording}, {"autodiff": reference}, two_groups, dtypes=(np.float64,))
    first = next(rows)
    assert first.options == "weight" and first.cases == 2 and first.ok
    assert len(called) == 2  # the z_loss block has not started
    second = next(rows)
    assert second.options == "z_loss" and len(called) == 4


def test_verify_command_prints_rows_as_it_goes_and_keeps_json(monkeypatch, capsys):
    import json

    from softmax_grad import verify
    from softmax_grad.cli import main

    real = verify.iter_verify
    small = [case for case in CASES if case.group == "softcap"]
    monkeypatch.setattr(verify, "iter_verify", lambda variants, oracles: real(variants, oracles, small))
    assert main(["verify", "--variant", "vectorized"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("| function |") and out[2].startswith("| softmax_loss [softcap] | vectorized | float64")
    assert main(["verify", "--variant", "vectorized", "--json"]) == 0
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert [(r["options"], r["dtype"], r["ok"]) for r in rows] == [
        ("softcap", "float64", True),
        ("softcap", "float32", True),
    ]
    assert "| softmax_loss [softcap] | vectorized | float32" in captured.err


# ------------------------------------------------------------- a small z-term
CONFIDENT = {
    "C=1": (np.array([[0.00012573], [0.0]]), np.array([0, 0])),
    "confident rows": (np.array([[0.0, -40.0], [1e-5, -30.0]]), np.array([0, 0])),
}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("problem", CONFIDENT)
def test_a_small_z_loss_term_on_a_vanishing_cross_entropy_gradient_keeps_its_digits(variant, problem):
    # Found by the thorough hypothesis profile. Where the cross-entropy gradient vanishes (C = 1, or
    # rows predicted with p = 1 to rounding) and lse is small, dS is the z-loss term 2 z u lse p alone,
    # of size 1e-8 to 1e-9 here. Folded into one row coefficient (r a + 2 z u lse) p - r q, it kept
    # only about eps / (2 z u lse) of its digits (1e-8 relative, the rounding of r a = 1/N) in per_row,
    # vectorized and compiled; the two terms of (24) must be added apart, as autodiff does.
    S, y = CONFIDENT[problem]
    for reduction in ("mean", "sum"):
        expected = reference.softmax_loss(S, y, z_loss=1e-4, reduction=reduction)
        actual = VARIANTS[variant].softmax_loss(S, y, z_loss=1e-4, reduction=reduction)
        comparison = compare(actual[1], expected[1], TOL, label="dS", gradient=True)
        assert comparison.ok, comparison.message
