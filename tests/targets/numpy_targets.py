"""NumPy functions for the checker's tests, written as a student or a framework author would: right ones and faults.

They live in a module of their own, importing only NumPy, so that the checker's
child process loads them as it would a user's file, in a fraction of a second.
"""

from __future__ import annotations

import numpy as np


def scores_mean(scores, y):
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(len(y))
    dscores = np.exp(log_p)
    dscores[rows, y] -= 1
    return -log_p[rows, y].mean(), dscores / len(y)


def scores_sum(scores, y):
    loss, dscores = scores_mean(scores, y)
    return loss * len(y), dscores * len(y)


def linear_course(W, X, y, reg):
    """The course convention: R = reg * sum W^2, so dW gets 2 reg W."""
    loss, dscores = scores_mean(X @ W, y)
    return loss + reg * np.sum(W * W), X.T @ dscores + 2 * reg * W


def linear_derivation(W, X, y, reg):
    """The derivation's convention: R = reg/2 * sum W^2."""
    loss, dscores = scores_mean(X @ W, y)
    return loss + 0.5 * reg * np.sum(W * W), X.T @ dscores + reg * W


def linear_naive(W, X, y, reg):
    """Loops over samples and classes, as in the course's softmax_loss_naive."""
    loss, dW = 0.0, np.zeros_like(W)
    for i in range(X.shape[0]):
        s = X[i] @ W
        s = s - s.max()
        p = np.exp(s) / np.exp(s).sum()
        loss += -s[y[i]] + np.log(np.exp(s).sum())
        for j in range(W.shape[1]):
            dW[:, j] += (p[j] - (j == y[i])) * X[i]
    N = X.shape[0]
    return loss / N + reg * np.sum(W * W), dW / N + 2 * reg * W


def two_layer(params, X, y, reg, relu_open=np.greater, transpose_square_dW1=False):
    Z1 = X @ params["W1"] + params["b1"]
    H1 = np.maximum(Z1, 0)
    loss, dS = scores_mean(H1 @ params["W2"] + params["b2"], y)
    dZ1 = (dS @ params["W2"].T) * relu_open(Z1, 0)
    dW1 = X.T @ dZ1
    if transpose_square_dW1 and dW1.shape[0] == dW1.shape[1]:
        dW1 = dW1.T
    grads = {
        "W1": dW1 + reg * params["W1"],
        "b1": dZ1.sum(0),
        "W2": H1.T @ dS + reg * params["W2"],
        "b2": dS.sum(0),
    }
    return loss + 0.5 * reg * (np.sum(params["W1"] ** 2) + np.sum(params["W2"] ** 2)), grads


def canonical(W, X, y, reg):
    """The course solution as most students write it: max shift, probs, -log(probs[arange(N), y]).mean()."""
    N = X.shape[0]
    scores = X @ W
    scores = scores - scores.max(axis=1, keepdims=True)
    probs = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    loss = -np.log(probs[np.arange(N), y]).mean() + reg * np.sum(W * W)
    onehot = np.zeros_like(probs)
    onehot[np.arange(N), y] = 1
    return loss, X.T @ (probs - onehot) / N + 2 * reg * W


def unshifted(scores, y):
    """The seed's formula without the max shift: exp overflows past 709.78, and the gradient turns NaN."""
    e = np.exp(scores)
    p = e / e.sum(axis=1, keepdims=True)
    rows = np.arange(len(y))
    loss = -np.log(p[rows, y]).mean()
    p[rows, y] -= 1
    return loss, p / len(y)


def shifted_by(shift):
    def fn(scores, y):
        return unshifted(shift(scores), y)

    return fn


# ------------------------------------------------------------------ faults
def off_by_a_tenth_of_a_percent(scores, y):
    loss, d = scores_mean(scores, y)
    return loss, d * 1.001


def wrong_loss(scores, y):
    loss, d = scores_mean(scores, y)
    return loss + 1e-6, d


def raises(scores, y):
    if scores.shape[1] == 2:
        raise ValueError("binary case not handled")
    return scores_mean(scores, y)


def writes_into_scores(scores, y):
    scores -= scores.max(axis=1, keepdims=True)  # the second post's in-place shift
    return scores_mean(scores, y)


def wrong_shape(scores, y):
    loss, d = scores_mean(scores, y)
    return loss, d[:, :-1]


def missing_key(params, X, y, reg):
    loss, grads = two_layer(params, X, y, reg)
    del grads["b2"]
    return loss, grads


def not_a_pair(scores, y):
    return scores_mean(scores, y)[1]


def sign_flipped(scores, y):
    loss, d = scores_mean(scores, y)
    return loss, -d


def gradient_of_another_function(scores, y):
    loss, d = scores_mean(scores, y)
    return loss, d + 0.01 * scores  # the gradient of loss + 0.005 |S|^2


def no_reg_gradient(W, X, y, reg):
    loss, dW = linear_derivation(W, X, y, reg)
    return loss, dW - reg * W


def wrong_from_n_20(scores, y):
    loss, d = scores_mean(scores, y)
    return loss, d * 1.001 if len(y) >= 20 else d


def assumes_c_order(scores, y):
    """Reads the scores through strides it assumes: wrong on Fortran-ordered and non-contiguous input."""
    N, C = scores.shape
    view = np.lib.stride_tricks.as_strided(scores, (N, C), (C * scores.itemsize, scores.itemsize))
    return scores_mean(np.array(view), y)


def wrong_only_at_n_1(scores, y):
    loss, d = scores_mean(scores, y)
    return loss, d * 2 if len(y) == 1 else d




def linear_ce(X, W, y, bias):
    """The last layer of a language model: logits X W + b; dX, dW and db through dS = (p - onehot) / N."""
    loss, dS = scores_mean(X @ W + bias, y)
    return loss, {"X": dS @ W.T, "W": X.T @ dS, "b": dS.sum(0)}


WEIGHT = np.array([1.0, 2.0, 0.5, 1.5, 0.25])


def weighted_smoothed(scores, y, weight=WEIGHT, e=0.1, ignore=-100):
    """Weighted, label-smoothed cross-entropy with ignored rows, as torch defines it."""
    kept = y != ignore
    S, labels = scores[kept], y[kept]
    shifted = S - S.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    C = S.shape[1]
    q = np.zeros_like(S)
    q[np.arange(len(labels)), labels] = 1 - e
    q = (q + e / C) * weight
    denominator = weight[labels].sum()
    loss = -(q * log_p).sum() / denominator
    dS = np.zeros_like(scores)
    dS[kept] = (np.exp(log_p) * q.sum(axis=1, keepdims=True) - q) / denominator
    return loss, dS




def ignored_rows(scores, y, ignore=-100, count_after_the_first=False, empty_loss=np.nan):
    """Cross-entropy over the rows not labelled ``ignore``; the faults: count every ignored row after the first
    (as class 0), or give ``empty_loss`` instead of NaN when every row is ignored."""
    y = y.copy()
    if count_after_the_first:
        y[np.flatnonzero(y == ignore)[1:]] = 0
    kept = y != ignore
    dscores = np.zeros_like(scores)
    if not kept.any():
        return empty_loss, dscores
    loss, dscores[kept] = scores_mean(scores[kept], y[kept])
    return loss, dscores


def penalty_disagrees(W, X, y, reg):
    """The loss takes the course's R = reg * sum W^2, dW the derivation's reg * W: no one convention."""
    loss, dscores = scores_mean(X @ W, y)
    return loss + reg * np.sum(W * W), X.T @ dscores + reg * W
