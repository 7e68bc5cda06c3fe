"""Backwards at a cotangent (derivation eq. 54) and masked classes (eq. 56): right ones, and the slips of fused kernels.

Each slip is one that shipped in a well-known cross-entropy kernel: a backward
that ignores ``grad_output``; one that reads ``grad_output[0]`` for every row of
``reduction="none"``; one that scales dW by the cotangent but not dX; one that
takes a shortcut when ``grad_output == 1`` (and is wrong otherwise); and a
soft-cap that turns a masked lane (-inf) into ``-c``. The right ones are the
frameworks' own: ``F.cross_entropy`` (after ``F.linear``) and plain JAX autodiff.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch
from torch.nn import functional


# ----------------------------------------------------------------- the frameworks' own (right)
def torch_cross_entropy(scores, y, reduction="mean"):
    return functional.cross_entropy(scores, y, reduction=reduction)


def torch_linear_cross_entropy(X, W, y, bias, reduction="mean"):
    return functional.cross_entropy(functional.linear(X, W.T, bias), y, reduction=reduction)


def jax_cross_entropy(scores, y, reduction="mean"):
    rows = -jnp.take_along_axis(jax.nn.log_softmax(scores, axis=1), y[:, None], axis=1)[:, 0]
    return {"mean": jnp.mean, "sum": jnp.sum, "none": lambda r: r}[reduction](rows)


def jax_linear_cross_entropy(X, W, y, bias, reduction="mean"):
    return jax_cross_entropy(X @ W + bias, y, reduction)


def numpy_vjp(scores, y, grad_output=None):
    """Mean cross-entropy in NumPy that takes the cotangent as README's NumPy rule says: ``g`` times the gradient."""
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(len(y))
    dscores = np.exp(log_p)
    dscores[rows, y] -= 1
    return -log_p[rows, y].mean(), (1.0 if grad_output is None else grad_output) * dscores / len(y)


def numpy_vjp_ignored(scores, y, grad_output=None):
    """Takes ``grad_output`` and ignores it: the gradient at cotangent 1."""
    return numpy_vjp(scores, y)


# ----------------------------------------------------------------- soft-capping and masks
def torch_softcapped(scores, y, cap=30.0):
    """Keeps a mask at -inf: the cap never sees it (eq. 56)."""
    masked = torch.isneginf(scores)
    capped = torch.where(masked, scores, cap * torch.tanh(torch.where(masked, 0.0, scores) / cap))
    return functional.cross_entropy(capped, y)


def torch_softcaps_the_mask(scores, y, cap=30.0):
    """The Unsloth slip: ``c tanh(S / c)`` on every entry turns a mask (-inf) into -c, a class with probability."""
    return functional.cross_entropy(cap * torch.tanh(scores / cap), y)


# ----------------------------------------------------------------- custom backwards, right and wrong
def _row_factor(grad, reduction, rows):
    """Eq. (54): each row's factor of the "sum" gradient, ``g / N``, ``g`` or ``g_i``."""
    if reduction == "none":
        return grad[:, None]
    return grad / rows if reduction == "mean" else grad


def _reduce(row_losses, reduction):
    return {"mean": torch.mean, "sum": torch.sum, "none": lambda r: r}[reduction](row_losses)


class CrossEntropy(torch.autograd.Function):
    """Cross-entropy with a hand-written backward; ``slip`` names the fault it makes, "" none."""

    @staticmethod
    def forward(ctx, scores, y, reduction, slip):
        log_p = torch.log_softmax(scores, dim=1)
        ctx.save_for_backward(log_p.exp(), y)
        ctx.reduction, ctx.slip = reduction, slip
        return _reduce(-log_p[torch.arange(len(y)), y], reduction)

    @staticmethod
    def backward(ctx, grad):
        p, y = ctx.saved_tensors
        rows = torch.arange(len(y))
        dscores = p.clone()
        dscores[rows, y] -= 1  # the "sum" reduction's row gradient
        if ctx.slip == "ignores grad_output":
            grad = torch.ones_like(grad)
        elif ctx.slip == "grad_output[0] for every row":
            grad = grad[0].expand_as(grad) if grad.ndim else grad
        elif ctx.slip == "skips the backward at 1":
            if torch.all(grad == 1):  # the fast path: right, and all that a test at cotangent 1 ever sees
                return dscores * _row_factor(grad, ctx.reduction, len(y)), None, None, None
            grad = grad / len(y)  # the general path divides by N twice: vanishing gradients in training
        return dscores * _row_factor(grad, ctx.reduction, len(y)), None, None, None


def custom_cross_entropy(scores, y, reduction="mean", slip=""):
    return CrossEntropy.apply(scores, y, reduction, slip)


class LinearCrossEntropy(torch.autograd.Function):
    """Cross-entropy of the logits ``X W + b`` with a hand-written backward; ``slip`` as ``CrossEntropy``'s."""

    @staticmethod
    def forward(ctx, X, W, y, bias, reduction, slip):
        log_p = torch.log_softmax(X @ W + bias, dim=1)
        ctx.save_for_backward(X, W, log_p.exp(), y)
        ctx.reduction, ctx.slip = reduction, slip
        return _reduce(-log_p[torch.arange(len(y)), y], reduction)

    @staticmethod
    def backward(ctx, grad):
        X, W, p, y = ctx.saved_tensors
        dS_rows = p.clone()
        dS_rows[torch.arange(len(y)), y] -= 1
        dS = dS_rows * _row_factor(grad, ctx.reduction, len(y))
        # the MaxText slip: the parameters' gradients take the cotangent, the hidden state's does not
        dS_for_X = dS_rows * _row_factor(torch.ones_like(grad), ctx.reduction, len(y)) if ctx.slip else dS
        return dS_for_X @ W.T, X.T @ dS, None, dS.sum(0), None, None


def custom_linear_cross_entropy(X, W, y, bias, reduction="mean", slip=""):
    return LinearCrossEntropy.apply(X, W, y, bias, reduction, slip)


@jax.custom_vjp
def jax_custom_ignores_grad_output(scores, y):
    return jax_cross_entropy(scores, y)


def _forward(scores, y):
    return jax_cross_entropy(scores, y), (jax.nn.softmax(scores, axis=1), y)


def _ignoring_backward(saved, grad):
    p, y = saved
    return (p - jax.nn.one_hot(y, p.shape[1], dtype=p.dtype)) / len(y), None  # never multiplied by grad


jax_custom_ignores_grad_output.defvjp(_forward, _ignoring_backward)
