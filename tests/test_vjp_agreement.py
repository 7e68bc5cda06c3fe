"""The backward as a vector-Jacobian product (derivation eqs. 54-56), in every variant and both oracles.

Every variant against each oracle on ``tests.vjp_cases`` (``reduction="none"``
with a random cotangent, scalar cotangents other than 1, masked classes with
every option a mask allows, ``linear_cross_entropy`` with a ``-inf`` bias),
float64 and float32; the two oracles against each other on the same cases
(z-loss and soft-capping, which torch lacks, are checked here); then closed
forms that need no oracle: "none" is "sum" row by row, each row's gradient
scaled by its own cotangent; a masked entry's gradient is exactly 0; padding
the vocabulary with masked classes changes nothing, soft-capped or not.
"""

from __future__ import annotations

import numpy as np
import pytest

from softmax_grad.compare import compare
from softmax_grad.tolerances import tolerance
from tests.conftest import DTYPES, ORACLES, VARIANTS
from tests.vjp_cases import SCALAR_COTANGENTS, compare_vjp, cotangent, failures, padded, row_masked, vjp_cases

CASES = vjp_cases()
INF = np.inf
IMPLEMENTATIONS = {**VARIANTS, **{f"reference.{name}": module for name, module in ORACLES.items()}}


def tol_for(implementation: str):
    return tolerance(np.float64, "finite_differences" if implementation.endswith("finite_differences") else "autodiff")


def test_the_cases_cover_the_cotangents_and_the_masks():
    kinds = {(case.function, case.kwargs["reduction"]) for case in CASES}
    assert kinds == {(f, r) for f in ("softmax_loss", "linear_cross_entropy") for r in ("none", "mean", "sum")}
    for case in CASES:
        g = np.asarray(case.kwargs["grad_output"])
        if case.kwargs["reduction"] == "none":  # mixed signs and zeros: a backward that uses g[0], |g| or 1 differs
            assert (g > 0).any() and (g < 0).any() and (g == 0).any()
        else:
            assert g.shape == () and g != 1.0
    masked = [
        case
        for case in CASES
        if any(np.isneginf(np.asarray(a)).any() for a in (*case.args, case.kwargs.get("bias", 0)))
    ]
    assert len(masked) >= 8 and any(case.kwargs.get("softcap") for case in masked)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("oracle", ORACLES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_agrees_with_each_oracle_on_the_vjp_cases(variant, oracle, dtype, oracle_result):
    found = []
    for base in CASES:
        case = base.astype(dtype)
        found += failures(compare_vjp(case, case.call(VARIANTS[variant]), oracle_result(case, oracle), oracle, case.id))
    assert not found, "\n".join(found)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
def test_the_two_oracles_agree_on_the_vjp_cases(dtype, oracle_result):
    # jax.vjp of reference.losses against differences of g . l(S) in NumPy: z-loss and soft-capping with masks too.
    found = []
    for base in CASES:
        case = base.astype(dtype)
        autodiff, fd = oracle_result(case, "autodiff"), oracle_result(case, "finite_differences")
        found += failures(compare_vjp(case, fd, autodiff, "finite_differences", case.id))
    assert not found, "\n".join(found)


# ------------------------------------------------------------- closed forms
S = 2 * np.random.default_rng(30).standard_normal((6, 5))
Y = np.array([0, 4, -100, 1, 2, 2])
W5 = np.array([0.5, 2.0, 1.0, 3.0, 0.25])
OPTIONS = {"weight": W5, "ignore_index": -100, "label_smoothing": 0.1, "z_loss": 0.05, "softcap": 2.5}


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_none_is_sum_row_by_row_each_row_scaled_by_its_own_cotangent(implementation):
    # eqs. (54)-(55): l_none sums to l_sum; dS_i(none, g) = g_i dS_i(sum); g scales the mean's gradient, not its loss.
    module, tol = IMPLEMENTATIONS[implementation], tol_for(implementation)
    g = cotangent(6, 30)
    total, dS_sum = module.softmax_loss(S, Y, reduction="sum", **OPTIONS)
    rows, dS_none = module.softmax_loss(S, Y, reduction="none", grad_output=g, **OPTIONS)
    assert rows.shape == (6,) and rows[2] == 0.0  # an ignored row's loss is 0 (eq. 55)
    assert compare(rows.sum(), total, tol, label="sum of row losses").ok
    assert compare(dS_none, g[:, None] * dS_sum, tol, label="dS none", gradient=True).ok
    assert np.all(dS_none[g == 0] == 0.0) and np.all(dS_none[2] == 0.0)
    mean, dS_mean = module.softmax_loss(S, Y, **OPTIONS)
    g_mean = SCALAR_COTANGENTS["mean"]
    scaled_mean, dS_scaled = module.softmax_loss(S, Y, grad_output=g_mean, **OPTIONS)
    assert compare(scaled_mean, mean, tol, label="loss unscaled").ok
    assert compare(dS_scaled, g_mean * dS_mean, tol, label="dS mean", gradient=True).ok


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_masked_entries_get_exactly_zero_gradient_and_nothing_is_nan(implementation):
    # eq. (56): p = 0 and dS = 0 at -inf, exactly, in every option; no 0 * -inf anywhere.
    module = IMPLEMENTATIONS[implementation]
    R, labels, T = row_masked()
    mask = np.isneginf(R)
    g = cotangent(6, 90)
    for y, options in [(labels, {"weight": np.arange(1.0, 7.0), "z_loss": 0.1, "softcap": 1.5}), (T, {"softcap": 1.5})]:
        rows, dS = module.softmax_loss(R, y, reduction="none", grad_output=g, **options)
        assert np.isfinite(rows).all() and np.isfinite(dS).all()
        assert np.all(dS[mask] == 0.0)
    P = module.softmax(R)
    assert np.isfinite(P).all() and np.all(P[mask] == 0.0)
    X, W = np.random.default_rng(31).standard_normal((4, 3)), np.random.default_rng(32).standard_normal((3, 7))
    bias = np.array([0.1, -INF, 0.3, 0.0, -INF, 0.2, -INF])
    options = {"softcap": 2.0, "z_loss": 0.05, "chunk_size": 3}
    loss, grads = module.linear_cross_entropy(
        X, W, [0, 2, 3, 5], bias=bias, reduction="none", grad_output=cotangent(4, 31), **options
    )
    assert np.isfinite(loss).all() and all(np.isfinite(v).all() for v in grads.values())
    assert np.all(grads["W"][:, np.isneginf(bias)] == 0.0) and np.all(grads["b"][np.isneginf(bias)] == 0.0)


@pytest.mark.parametrize("softcap", [None, 2.0], ids=["plain", "softcap"])
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_padding_the_vocabulary_with_masked_classes_changes_nothing(implementation, softcap):
    # A kernel that soft-caps -inf into -c gives the padding lanes mass e^{-c} each (Unsloth's bug): it fails here.
    module, tol = IMPLEMENTATIONS[implementation], tol_for(implementation)
    options = {"weight": W5, "ignore_index": -100, "z_loss": 0.05, "softcap": softcap}
    g = cotangent(6, 33)
    plain = module.softmax_loss(S, Y, reduction="none", grad_output=g, **options)
    options["weight"] = np.concatenate([W5, [1.0, 1.0, 1.0]])
    wide = module.softmax_loss(padded(S, 3), Y, reduction="none", grad_output=g, **options)
    assert compare(wide[0], plain[0], tol, label="row losses").ok
    assert compare(wide[1][:, :5], plain[1], tol, label="dS", gradient=True).ok and np.all(wide[1][:, 5:] == 0.0)
