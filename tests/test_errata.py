"""Each erratum of docs/errata.md, pinned: the source post's original code misbehaves, the suite's does not.

The "post" functions below transcribe the posts' code as printed, changing only
what Python 3 needs to run it at all, so that each test shows the original
behaviour failing next to the suite passing.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest

import reference
from manual import per_element, vectorized
from softmax_grad.compare import compare
from softmax_grad.tolerances import tolerance
from tests.conftest import VARIANTS

ERRATA = Path(__file__).resolve().parent.parent / "docs" / "errata.md"
RNG = np.random.default_rng(5)
S = RNG.standard_normal((4, 3))
Y = np.array([2, 0, 1, 1])

FIRST_POST_LOOP = """
exp_scores = np.exp(scores)
sums = np.sum(exp_scores, axis=1)
D_loss_D_scores = np.zeros(scores.shape)
for i in xrange(N):
    for j in xrange(C):
        if j == y[i]:
            D_loss_D_scores[i, j] = (-1.0 / N) * (1 - (exp_scores[i, j] / sums[i]))
        else:
            D_loss_D_scores[i, j] = (-1.0 / N) * (0 - (exp_scores[i, j] / sums[i]))
"""


def first_post_vectorized(scores, y):
    """The first post's last listing, as printed (np.matrix, no max shift)."""
    N = scores.shape[0]
    exp_scores = np.exp(scores)
    sums = np.sum(exp_scores, axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)  # np.matrix is on its way out
        DlossDscores = exp_scores / (N * np.matrix(sums).T)
    DlossDscores[range(N), y] -= 1.0 / N
    return DlossDscores


def second_post_loss(f, y):
    """The second post's listing up to its loss, as printed (f shifted in place, loss summed)."""
    num_train = f.shape[0]
    f -= np.max(f, axis=1, keepdims=True)  # for stability
    f_y = f[range(num_train), y]
    return -np.sum(np.log(np.exp(f_y) / np.sum(np.exp(f), axis=1)))


def test_E1_python2_loops_do_not_run_on_python3():
    namespace = {"np": np, "scores": S, "y": Y, "N": 4, "C": 3}
    with pytest.raises(NameError, match="xrange"):
        exec(FIRST_POST_LOOP, namespace)
    namespace["xrange"] = range  # the correction: Python 3's range
    exec(FIRST_POST_LOOP, namespace)
    _, dS = per_element.softmax_loss(S, Y)
    assert np.allclose(namespace["D_loss_D_scores"], dS, rtol=1e-14, atol=0)


def test_E2_np_matrix_changes_what_indexing_and_sums_return():
    post = first_post_vectorized(S, Y)
    assert isinstance(post, np.matrix)
    assert post[0].shape == (1, 3) and post.sum(axis=1).shape == (4, 1)  # 2-D where arrays give 1-D
    _, dS = vectorized.softmax_loss(S, Y)
    assert type(dS) is np.ndarray and dS[0].shape == (3,) and dS.sum(axis=1).shape == (4,)
    assert np.allclose(np.asarray(post), dS, rtol=1e-14, atol=1e-17)  # same numbers, other type


def test_E3_range_n_starts_at_zero_not_one():
    # The post says range(N) lists 1, ..., N-1. Code written from that sentence misses sample 0.
    N = S.shape[0]
    P = np.exp(S) / np.exp(S).sum(axis=1, keepdims=True)
    as_described = P / N
    as_described[range(1, N), Y[1:]] -= 1.0 / N
    _, ref_dS = reference.softmax_loss(S, Y)
    tol = tolerance(np.float64, "autodiff")
    assert not compare(as_described, ref_dS, tol, label="range(1, N)").ok
    assert list(range(N)) == [0, 1, 2, 3]
    assert compare(vectorized.softmax_loss(S, Y)[1], ref_dS, tol, label="suite").ok


def test_E4_missing_max_shift_overflows_past_709():
    scores = np.array([[710.0, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        post = np.asarray(first_post_vectorized(scores, np.array([1])))
    assert not np.isfinite(post).all()
    for name, module in VARIANTS.items():
        loss, dS = module.softmax_loss(scores, [1])
        assert loss == 710.0 and dS.tolist() == [[1.0, -1.0]], name


def test_E5_truncated_last_line_of_the_second_post():
    with pytest.raises(SyntaxError):
        compile("dW = - ind)", "<second post>", "exec")
    # The completed line: dW = X^T (p - ind), the sum convention of that post (eq. 12, reg = 0).
    X, W = RNG.standard_normal((5, 4)), RNG.standard_normal((4, 3))
    y = np.array([0, 2, 1, 1, 0])
    f = X @ W
    p = np.exp(f - f.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    ind = np.zeros_like(f)
    ind[range(5), y] = 1
    completed = X.T.dot(p - ind)
    _, ref_dW = reference.linear_loss(W, X, y, reduction="sum")
    tol = tolerance(np.float64, "autodiff")
    assert compare(completed, ref_dW, tol, label="completed line").ok
    for name, module in VARIANTS.items():
        assert compare(module.linear_loss(W, X, y, reduction="sum")[1], ref_dW, tol, label=name).ok


def test_E6_summed_and_averaged_losses_differ_by_n():
    post_loss = second_post_loss(S.copy(), Y)  # the second post sums
    summed, dS_sum = vectorized.softmax_loss(S, Y, reduction="sum")
    mean, dS_mean = vectorized.softmax_loss(S, Y)  # the first post averages
    assert np.isclose(post_loss, summed, rtol=1e-14)
    assert np.isclose(summed, 4 * mean, rtol=1e-14)
    # Mixing the two (a summed loss with an averaged gradient) fails a gradient check by a factor N.
    _, ref_sum = reference.softmax_loss(S, Y, reduction="sum")
    assert not compare(dS_mean, ref_sum, tolerance(np.float64, "autodiff"), label="mixed").ok
    assert compare(dS_sum, ref_sum, tolerance(np.float64, "autodiff"), label="sum").ok


def test_E7_in_place_shift_overwrites_the_callers_scores():
    caller = S.copy()
    second_post_loss(caller, Y)
    assert not np.array_equal(caller, S)  # the post's `f -= max` changed the caller's array
    caller = S.copy()
    for module in VARIANTS.values():
        module.softmax_loss(caller, Y)
    assert np.array_equal(caller, S)


def test_E8_negative_labels_wrap_around_in_the_posts_code():
    # The posts index f[range(N), y] unchecked: y = -1 silently means class C-1.
    wrapped = second_post_loss(S.copy(), np.array([-1, 0, 1, 1]))
    assert np.isfinite(wrapped)
    assert np.isclose(wrapped, second_post_loss(S.copy(), np.array([2, 0, 1, 1])))
    for module in VARIANTS.values():
        with pytest.raises(ValueError, match=r"y\[0\] = -1"):
            module.softmax_loss(S, [-1, 0, 1, 1])


def errata_row(number: str) -> list[str]:
    """The cells of one row of docs/errata.md's table: number, post, slip, what it breaks, correction, test."""
    for line in ERRATA.read_text().splitlines():
        if line.startswith(f"| {number} |"):
            return [cell.strip() for cell in line.strip().strip("|").split(" | ")]
    raise AssertionError(f"docs/errata.md has no row {number}")


IN_PLACE_UPDATE = "b2 -= lr * db2"
REBINDING_UPDATE = "b2 = b2 - lr * db2"


def test_E9_ones_row_vector_gives_db2_the_wrong_shape():
    # The post's D_loss_D_b2 = np.dot(np.ones((1, N)), D_loss_D_scores) has shape (1, C), not (C,).
    _, dS = vectorized.softmax_loss(S, Y)
    post_db2 = np.dot(np.ones((1, 4)), dS)
    assert post_db2.shape == (1, 3)
    namespace = {"b2": np.zeros(3), "lr": 0.1, "db2": post_db2}
    with pytest.raises(ValueError, match="broadcast"):
        exec(IN_PLACE_UPDATE, namespace)  # a (3,) array cannot hold the (1, 3) result
    assert namespace["b2"].shape == (3,)
    exec(REBINDING_UPDATE, namespace)
    assert namespace["b2"].shape == (1, 3)  # this update runs and silently makes b2 2-D
    # errata.md must say which update does what: it once said the in-place one silently reshapes b2.
    clauses = re.split(r";|\.\s", errata_row("E9")[3])
    assert any(f"`{IN_PLACE_UPDATE}`" in c and "ValueError" in c for c in clauses), clauses
    assert any(f"`{REBINDING_UPDATE}`" in c and "(1, C)" in c for c in clauses), clauses
    assert not compare(post_db2, dS.sum(axis=0), tolerance(np.float64, "autodiff"), label="db2").ok
    params = {"W1": np.eye(3), "b1": np.zeros(3), "W2": np.eye(3), "b2": np.zeros(3)}
    for module in VARIANTS.values():
        assert module.two_layer_loss(params, S, Y)[1]["b2"].shape == (3,)


def test_E10_notation_n_is_the_batch_size_n():
    # The first post writes the mean as (1/n) sum_i L_i while N names the batch elsewhere;
    # the mean is over the N rows of the batch.
    per_sample = [vectorized.softmax_loss(S[i : i + 1], Y[i : i + 1])[0] for i in range(4)]
    assert np.isclose(vectorized.softmax_loss(S, Y)[0], sum(per_sample) / 4, rtol=1e-14)


def test_E11_zeros_of_scores_shape_turn_float32_into_float64():
    # np.zeros(scores.shape) in the first listing is float64 whatever the scores are.
    scores32 = S.astype(np.float32)
    namespace = {"np": np, "scores": scores32, "y": Y, "N": 4, "C": 3, "xrange": range}
    exec(FIRST_POST_LOOP, namespace)
    assert namespace["D_loss_D_scores"].dtype == np.float64
    for module in VARIANTS.values():
        assert module.softmax_loss(scores32, Y)[1].dtype == np.float32
