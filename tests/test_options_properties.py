"""Property-based tests of the loss options: hypothesis draws the options along with the data.

Shapes, scales, dtypes, integer labels (some ignored) or soft targets (rows
summing to anything, zero rows included), class weights (zeros included),
smoothing in [0, 1], z-loss, soft caps and the reduction are all drawn; every
variant must agree with both oracles and keep the structure of eq. (24). The
profiles of tests/conftest.py apply (a few derandomized examples by default).
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import reference
from reference import finite_differences as fd
from softmax_grad.cases import Case
from softmax_grad.compare import compare
from softmax_grad.contract import check_options
from softmax_grad.tolerances import tolerance
from tests.conftest import VARIANTS
from tests.test_properties import assert_agrees, assert_gradient_matches_fd, dtypes, score_scales, seeds

# A few sizes, edges included, so that JAX's compilations (one per shape and option structure) are reused.
SIZES_N, SIZES_C = (1, 2, 7, 24), (1, 2, 5, 12)
# The secondary properties run a third of the profile's examples (5 by default, hundreds when thorough).
FEWER = settings(max_examples=max(3, settings.default.max_examples // 3))


@st.composite
def option_problems(draw):
    """``(scores, y, kwargs)``: a drawn problem with drawn loss options."""
    N, C = draw(st.sampled_from(SIZES_N)), draw(st.sampled_from(SIZES_C))
    rng = np.random.default_rng(draw(seeds))
    S = (draw(score_scales) * rng.standard_normal((N, C))).astype(draw(dtypes))
    kwargs = {"reduction": draw(st.sampled_from(["mean", "sum"]))}
    if draw(st.booleans()):  # soft targets, rows summing to anything, some rows zero
        y = rng.random((N, C)) * rng.choice([0.0, 0.5, 1.0, 3.0], size=(N, 1))
    else:
        y = rng.integers(0, C, N)
        ignore = draw(st.sampled_from([None, -100, "in range"]))
        if ignore == -100:
            y[rng.random(N) < 0.3] = -100
            kwargs["ignore_index"] = -100
        elif ignore == "in range":
            kwargs["ignore_index"] = C - 1  # a real class
    if draw(st.booleans()):
        weight = rng.random(C) * 3
        weight[rng.random(C) < 0.2] = 0.0
        kwargs["weight"] = weight
    kwargs["label_smoothing"] = draw(st.sampled_from([0.0, 0.1, float(rng.random()), 1.0]))
    kwargs["z_loss"] = draw(st.sampled_from([0.0, 1e-4, 0.1]))
    kwargs["softcap"] = draw(st.sampled_from([None, 1.0, 30.0]))
    return S, y, kwargs


@given(option_problems())
def test_every_variant_agrees_with_autodiff_on_drawn_options(problem):
    S, y, kwargs = problem
    case = Case("drawn", "softmax_loss", (S, y), kwargs)
    expected = case.call(reference)
    for module in VARIANTS.values():
        assert_agrees(case, case.call(module), expected, "autodiff")


@FEWER
@given(option_problems(), seeds)
def test_every_variant_agrees_with_finite_differences_on_drawn_options(problem, seed):
    S, y, kwargs = problem
    S = S.astype(np.float64)
    reduction = kwargs["reduction"]
    options = check_options(S.shape[1], **{k: v for k, v in kwargs.items() if k != "reduction"})
    loss = fd.softmax_loss_value(S, y, reduction, options)
    for module in VARIANTS.values():
        value, dS = module.softmax_loss(S, y, **kwargs)
        if np.isnan(loss):  # a "mean" over no rows: NaN loss, the cross-entropy's gradient zero (eq. 20)
            assert np.isnan(value)
            continue
        rng = np.random.default_rng(seed)
        assert_gradient_matches_fd(lambda s: fd.softmax_loss_value(s, y, reduction, options), S, dS, rng)


@FEWER
@given(option_problems())
def test_row_sums_of_the_gradient_are_the_z_loss_term_alone(problem):
    # Eq. (22) sums to 0 along each row whatever the target; eq. (23) adds 2 z u_i lse_i (no cap: dS = dZ).
    S, y, kwargs = problem
    kwargs = {**kwargs, "softcap": None}
    S = S.astype(np.float64)
    z = kwargs["z_loss"]
    N = S.shape[0]
    kept = np.ones(N) if y.ndim == 2 or "ignore_index" not in kwargs else (y != kwargs["ignore_index"]) * 1.0
    u = kept if kwargs["reduction"] == "sum" else kept / max(kept.sum(), 1.0)
    m = S.max(axis=1)
    lse = m + np.log(np.exp(S - m[:, None]).sum(axis=1))
    expected = 2 * z * u * lse
    tol = tolerance(np.float64, "autodiff")
    for module in VARIANTS.values():
        _, dS = module.softmax_loss(S, y, **kwargs)
        scale = np.abs(dS).sum(axis=1).max() + np.abs(expected).max()
        assert np.all(np.abs(dS.sum(axis=1) - expected) <= tol.atol * scale + 1e-300)


@FEWER
@given(option_problems(), st.sampled_from([-50.0, 3.0, 700.0]))
def test_without_z_loss_or_cap_a_common_shift_of_a_row_changes_nothing(problem, shift):
    S, y, kwargs = problem
    kwargs = {**kwargs, "z_loss": 0.0, "softcap": None}
    S = S.astype(np.float64)
    tol = tolerance(np.float64, "autodiff")
    for module in VARIANTS.values():
        loss, dS = module.softmax_loss(S, y, **kwargs)
        moved_loss, moved_dS = module.softmax_loss(S + shift, y, **kwargs)
        if np.isnan(loss):
            assert np.isnan(moved_loss) and np.array_equal(dS, moved_dS)
            continue
        # the shifted scores carry about |shift| eps of absolute rounding into every entry
        loose = type(tol)(tol.rtol, tol.atol, abs(shift) * 1e-15 * max(1.0, abs(loss)), abs(shift) * 1e-15)
        assert compare(moved_loss, loss, loose, label="loss").ok
        assert compare(moved_dS, dS, loose, label="dS", gradient=True).ok
