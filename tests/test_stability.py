"""Large logits: the max shift (eq. 14) keeps every variant finite and exact; without it, exp overflows.

The boundaries are the float formats' own: exp(x) overflows float64 past
x = log(1.8e308) = 709.78 and float32 past x = log(3.4e38) = 88.72. The
finite side is taken one unit lower (708, 87), where 1/sum is still a normal
number: XLA (the compiled variant) flushes a subnormal 1/sum to zero, which
happens from 708.4 (float64) and 87.3 (float32).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import reference
from softmax_grad.compare import compare
from softmax_grad.tolerances import tolerance
from tests.conftest import VARIANTS

# (dtype, largest score that does not overflow, smallest that does)
BOUNDARIES = [(np.float64, 708.0, 710.0), (np.float32, 87.0, 89.0)]


@pytest.mark.parametrize("variant", VARIANTS)
def test_spread_of_1000_has_the_exact_answer(variant):
    # p = (1, e^-1000) rounds to (1, 0), so dS = p - onehot(1) = (1, -1) and L = 1000 exactly.
    loss, dS = VARIANTS[variant].softmax_loss(np.array([[1000.0, 0.0]]), np.array([1]))
    assert loss == 1000.0
    assert dS.tolist() == [[1.0, -1.0]]


@pytest.mark.parametrize("scale", [710.0, 1e4, 1e8])
@pytest.mark.parametrize("variant", VARIANTS)
def test_stable_matches_autodiff_far_past_the_overflow_point(variant, scale):
    S = scale * np.array([[1.0, -1.0, 0.5], [0.2, 0.9, -0.3]])
    y = np.array([1, 2])
    loss, dS = VARIANTS[variant].softmax_loss(S, y)
    ref_loss, ref_dS = reference.softmax_loss(S, y)
    tol = tolerance(np.float64, "autodiff")
    assert compare(dS, ref_dS, tol, label=f"{variant} dS").ok
    assert compare(loss, ref_loss, tol, label=f"{variant} loss").ok


@pytest.mark.parametrize(("dtype", "finite", "overflowing"), BOUNDARIES, ids=["float64", "float32"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_unstable_formula_overflows_exactly_at_the_float_boundary(variant, dtype, finite, overflowing):
    y = np.array([1])
    module = VARIANTS[variant]
    below = np.array([[finite, 0.0]], dtype)
    loss, dS = module.softmax_loss(below, y, stable=False)
    ref_loss, ref_dS = reference.softmax_loss(below, y)
    assert compare(dS, ref_dS, tolerance(dtype, "autodiff"), label="dS below the boundary", dtype=dtype).ok
    assert compare(loss, ref_loss, tolerance(dtype, "autodiff"), label="loss below the boundary").ok

    above = np.array([[overflowing, 0.0]], dtype)
    with warnings.catch_warnings():  # NumPy warns of the overflow; XLA does not
        warnings.simplefilter("ignore", RuntimeWarning)
        loss, dS = module.softmax_loss(above, y, stable=False)
    assert not np.isfinite(loss) or not np.isfinite(dS).all()
    loss, dS = module.softmax_loss(above, y)  # stable=True, the default, is exact there
    assert np.isfinite(dS).all() and np.isclose(loss, overflowing)


@pytest.mark.parametrize("variant", VARIANTS)
def test_stable_flag_must_be_a_bool(variant):
    with pytest.raises(TypeError, match="stable"):
        VARIANTS[variant].softmax_loss(np.zeros((1, 2)), [0], stable="no")


# The tuned variant takes exp(S) unshifted when its row sums lie in [1, scale / smallest normal]
# (manual.tuned._shift_is_free), else the max shift. Each edge from both sides, then far past
# each: a probe row [t, t - 50, t - 60] has row sums exp(t) (1 + 2e-22), so its edges are t = 0 and
# t = log(scale / smallest normal), 708 - log N in float64 and 87.3 - log N in float32.
def probe_scores(dtype: type, t: float, N: int = 6) -> np.ndarray:
    rest = np.abs(np.random.default_rng(11).standard_normal((N - 1, 3)))  # sums > 1, far inside
    return np.vstack([rest, [[t, t - 50.0, t - 60.0]]]).astype(dtype)


def upper_edge(dtype: type, N: int = 6) -> float:
    return float(np.log(1.0 / N) - np.log(np.finfo(dtype).tiny))


EDGE_STEP = {np.float64: 1e-9, np.float32: 1e-3}  # a few units in the last place of t
SHIFT_PATHS = [
    (dtype, name, free)
    for dtype in (np.float64, np.float32)
    for name, free in [
        ("just above 0", True),
        ("just below 0", False),
        ("far below 0", False),
        ("just below the upper edge", True),
        ("just above the upper edge", False),
        ("far above the upper edge", False),
    ]
]


def probe_offset(dtype: type, name: str) -> float:
    step, top = EDGE_STEP[dtype], upper_edge(dtype)
    return {
        "just above 0": step,
        "just below 0": -step,
        "far below 0": -800.0 if dtype == np.float64 else -100.0,  # exp(S) underflows to 0
        "just below the upper edge": top - step,
        "just above the upper edge": top + step,
        "far above the upper edge": top + 10.0,  # the factor 1/(N sums) would be deep in the subnormals
    }[name]


@pytest.mark.parametrize(
    ("dtype", "name", "free"), SHIFT_PATHS, ids=[f"{d.__name__}-{n.replace(' ', '-')}" for d, n, _ in SHIFT_PATHS]
)
def test_tuned_skips_the_shift_only_where_it_is_free_and_agrees_either_way(dtype, name, free):
    from manual import tuned

    S = probe_scores(dtype, probe_offset(dtype, name))
    N = S.shape[0]
    with np.errstate(over="ignore", under="ignore"):
        sums = np.exp(S.astype(np.float64)).sum(axis=1).astype(dtype)
    y = np.array([0, 2, 1, 2, 0, 1])
    for reduction in ("mean", "sum"):
        loss, dS = tuned.softmax_loss(S, y, reduction=reduction)
        ref_loss, ref_dS = reference.softmax_loss(S, y, reduction=reduction)
        tol = tolerance(dtype, "autodiff")
        assert compare(dS, ref_dS, tol, label=f"dS {reduction}", dtype=dtype).ok
        assert compare(loss, ref_loss, tol, label=f"loss {reduction}").ok
    assert tuned._shift_is_free(sums, 1.0 / N, S.dtype) is free


@pytest.mark.parametrize(("dtype", "far"), [(np.float64, -800.0), (np.float32, -100.0)], ids=["float64", "float32"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_a_label_whose_exp_underflows_has_the_exact_loss(variant, dtype, far):
    # Row sums near 1 (no shift needed) but exp(S_iy) = 0: the loss is -S_iy + log(sums), not inf.
    S = np.array([[0.5, far, 0.0], [far, 0.25, 0.0]], dtype)
    y = np.array([1, 0])
    loss, dS = VARIANTS[variant].softmax_loss(S, y)
    ref_loss, ref_dS = reference.softmax_loss(S, y)
    tol = tolerance(dtype, "autodiff")
    assert compare(loss, ref_loss, tol, label="loss").ok, (loss, ref_loss)
    assert compare(dS, ref_dS, tol, label="dS", dtype=dtype).ok


# Rows whose sums need no shift (exp(top) is finite) but whose label lies so far below the top that
# sums / exp(S_iy) = exp(top - S_iy) overflows: the loss is top - S_iy, finite. Each row alone, so
# that no other row of its block takes it down the max-shift path.
WIDE_ROWS = [(np.float64, 639.0, -213.0), (np.float64, 700.0, -10.0), (np.float32, 80.0, -20.0)]


@pytest.mark.parametrize(("dtype", "top", "label_score"), WIDE_ROWS, ids=["f64-852", "f64-710", "f32-100"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_a_label_further_below_the_top_than_the_float_range_has_a_finite_loss(variant, dtype, top, label_score):
    S, y = np.array([[top, label_score, 0.0]], dtype), np.array([1])
    loss, dS = VARIANTS[variant].softmax_loss(S, y)
    ref_loss, ref_dS = reference.softmax_loss(S, y)
    tol = tolerance(dtype, "autodiff")
    assert compare(loss, ref_loss, tol, label="loss").ok, (loss, ref_loss)
    assert compare(dS, ref_dS, tol, label="dS", dtype=dtype).ok


# Row maxima t where exp(t) * (1 / exp(t)) is not exactly 1 in float64: there a product of the two would
# leave p_y - 1 at an ulp.
ROUNDING_TOPS = [t for t in np.linspace(1.0, 700.0, 4001) if np.exp(t) * (1 / np.exp(t)) != 1][::200][:3]


@pytest.mark.parametrize("top", ROUNDING_TOPS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_a_row_certain_of_its_label_has_a_gradient_at_its_own_scale(variant, top):
    # Found by the thorough hypothesis profile: p_y = 1 - e^-144 rounds to 1, and dS_y = p_y - 1 must not be an
    # ulp of 1: judged at the gradient's own scale, that is a 1e46-fold error. By eq. (30) it is -e^-144, the
    # other entry's negative (0.2 gave 0 here; the oracle, written with eq. 30's softplus, gives -e^-144).
    S, y = np.array([[top, top - 144.0]]), np.array([0])
    loss, dS = VARIANTS[variant].softmax_loss(S, y)
    ref_loss, ref_dS = reference.softmax_loss(S, y)
    tol = tolerance(np.float64, "autodiff")
    assert compare(dS, ref_dS, tol, label=f"{variant} dS", gradient=True).ok, (dS, ref_dS)
    assert compare(loss, ref_loss, tol, label=f"{variant} loss").ok
