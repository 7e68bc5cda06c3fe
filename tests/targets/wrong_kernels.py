"""Kernels wrong only at the sizes kernels meet: each passed the 0.2 battery and fails this one.

Written as a kernel author would, with NumPy: chunks of classes, blocks of rows.
"""

from __future__ import annotations

import numpy as np

from tests.targets.numpy_targets import scores_mean


def online_lse_without_rescale(scores, y, chunk=128):
    """The online log-sum-exp over chunks of 128 classes, without rescaling the running sum when the max grows."""
    N, C = scores.shape
    m = np.full(N, -np.inf)
    total = np.zeros(N)
    for start in range(0, C, chunk):
        block = scores[:, start : start + chunk]
        m = np.maximum(m, block.max(axis=1))
        total += np.exp(block - m[:, None]).sum(axis=1)  # should first scale total by exp(m_old - m)
    lse = m + np.log(total)
    rows = np.arange(N)
    dscores = np.exp(scores - lse[:, None])
    dscores[rows, y] -= 1
    return np.mean(lse - scores[rows, y]), dscores / N


def chunked_tail_bias_from_zero(X, W, y, bias, chunk=1024):
    """Logits chunk by chunk over the classes; the tail chunk (narrower than the rest) takes bias[:width]."""
    C = W.shape[1]
    blocks = []
    for start in range(0, C, chunk):
        width = min(chunk, C - start)
        b = bias[start : start + width] if width == chunk else bias[:width]  # the slip: from 0, not from start
        blocks.append(X @ W[:, start : start + width] + b)
    loss, dS = scores_mean(np.concatenate(blocks, axis=1), y)
    return loss, {"X": dS @ W.T, "W": X.T @ dS, "b": dS.sum(axis=0)}


def wrong_past_8_classes(scores, y):
    """A kernel specialised up to 8 classes; its general path scales the gradient by 1.01."""
    loss, dscores = scores_mean(scores, y)
    return loss, dscores * 1.01 if scores.shape[1] > 8 else dscores


def row_blocks_of_80(scores, y, block=80):
    """Rows in blocks of 80; the tail block (shorter) divides by its own length instead of N."""
    N = len(y)
    losses, grads = [], []
    for start in range(0, N, block):
        rows = slice(start, start + block)
        part_loss, part_grad = scores_mean(scores[rows], y[rows])
        count = min(block, N - start)
        scale = count / N if count == block else 1.0  # the tail keeps its own mean: wrong once N > 80
        losses.append(part_loss * count / N)
        grads.append(part_grad * scale)
    return float(np.sum(losses)), np.concatenate(grads)
