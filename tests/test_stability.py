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


# (dtype, offset added to |normal| scores, whether a shift of 0 is free): the limit for C = 5
# is min(log(largest float) - log(5) - 1, -log(smallest normal)), 707.2 in float64 and 86.1 in float32.
SHIFT_PATHS = [
    (np.float64, 0.0, True),
    (np.float64, -10.0, False),
    (np.float64, 600.0, True),
    (np.float64, 708.0, False),
    (np.float32, 0.0, True),
    (np.float32, -10.0, False),
    (np.float32, 80.0, True),
    (np.float32, 86.5, False),
]


@pytest.mark.parametrize(
    ("dtype", "offset", "free"), SHIFT_PATHS, ids=[f"{d.__name__}{o:+}" for d, o, _ in SHIFT_PATHS]
)
def test_vectorized_skips_the_shift_only_where_it_is_free_and_agrees_either_way(dtype, offset, free):
    # The vectorized variant applies eq. (14) with c = 0 when that is provably as safe as
    # c = max (manual.vectorized._shift_is_free); both paths must give the oracle's answer.
    from manual import vectorized

    S = (np.abs(np.random.default_rng(11).standard_normal((6, 5))) + offset).astype(dtype)
    assert vectorized._shift_is_free(S.max(axis=1), S.dtype, S.shape[1]) is free
    y = np.array([0, 4, 2, 2, 1, 3])
    loss, dS = vectorized.softmax_loss(S, y)
    ref_loss, ref_dS = reference.softmax_loss(S, y)
    tol = tolerance(dtype, "autodiff")
    assert compare(dS, ref_dS, tol, label="dS", dtype=dtype).ok
    assert compare(loss, ref_loss, tol, label="loss").ok
