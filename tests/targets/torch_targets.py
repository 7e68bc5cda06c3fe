"""PyTorch functions for the checker's tests: a custom autograd.Function, and losses built from torch ops."""

from __future__ import annotations

import torch
from torch.nn import functional


class SoftmaxCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy with a hand-written backward: (p - onehot) / N, times the incoming gradient."""

    @staticmethod
    def forward(ctx, scores, y, scale=1.0):
        log_p = scores - torch.logsumexp(scores, dim=1, keepdim=True)
        ctx.save_for_backward(log_p.exp(), y)
        ctx.scale = scale
        return -log_p[torch.arange(len(y)), y].mean()

    @staticmethod
    def backward(ctx, grad):
        p, y = ctx.saved_tensors
        dscores = p.clone()
        dscores[torch.arange(len(y)), y] -= 1
        return grad * ctx.scale * dscores / len(y), None, None


def custom_function(scores, y):
    return SoftmaxCrossEntropy.apply(scores, y)


def custom_function_sum_backward(scores, y):  # the backward forgets the 1/N: N times too large
    return SoftmaxCrossEntropy.apply(scores, y, float(len(y)))


def custom_function_off_by_a_percent(scores, y):
    return SoftmaxCrossEntropy.apply(scores, y, 1.01)


def library_smoothed(scores, y):
    return functional.cross_entropy(scores, y, label_smoothing=0.1)


def library_ignore(scores, y):
    return functional.cross_entropy(scores, y, ignore_index=-100)


def capped_with_z_loss(scores, y, cap=30.0, z=1e-4):
    """Gemma 2's soft cap, then PaLM's z-loss on the capped logits; a masked class (-inf) stays masked."""
    masked = torch.isneginf(scores)
    logits = torch.where(masked, scores, cap * torch.tanh(torch.where(masked, 0.0, scores) / cap))
    return functional.cross_entropy(logits, y) + z * (torch.logsumexp(logits, dim=1) ** 2).mean()


def linear_pair(W, X, y, reg):
    """Returns the loss and dW, computed by hand with tensors."""
    S = X @ W
    log_p = S - torch.logsumexp(S, dim=1, keepdim=True)
    N = len(y)
    dS = log_p.exp()
    dS[torch.arange(N), y] -= 1
    loss = -log_p[torch.arange(N), y].mean() + 0.5 * reg * (W * W).sum()
    return loss, X.T @ dS / N + reg * W


def two_layer_autograd(params, X, y, reg):
    H1 = torch.relu(X @ params["W1"] + params["b1"])
    S = H1 @ params["W2"] + params["b2"]
    return functional.cross_entropy(S, y) + 0.5 * reg * ((params["W1"] ** 2).sum() + (params["W2"] ** 2).sum())


class DependsOnGrad(torch.autograd.Function):
    """A right backward; a forward that returns N times the loss when ``wrong_when_grad`` matches the call."""

    @staticmethod
    def forward(ctx, scores, y, wrong_when_grad):
        ctx.save_for_backward(torch.softmax(scores, dim=1), y)
        loss = -torch.log_softmax(scores, dim=1)[torch.arange(len(y)), y].mean()
        return loss * len(y) if ctx.needs_input_grad[0] == wrong_when_grad else loss

    @staticmethod
    def backward(ctx, grad):
        p, y = ctx.saved_tensors
        dscores = p.clone()
        dscores[torch.arange(len(y)), y] -= 1
        return grad * dscores / len(y), None, None


def forward_wrong_when_grad_wanted(scores, y):
    return DependsOnGrad.apply(scores, y, True)


def forward_wrong_without_grad(scores, y):
    return DependsOnGrad.apply(scores, y, False)
